"""Sites: which hospital or scanner an image comes from, so that each site is served its own adapter.

A site's name comes from ``--conf sites`` (a map of image ids), the image's DICOM InstitutionName /
StationName / Manufacturer, or the ``site`` field a client sets in the image's datastore info
(:mod:`.resolve`); names are made safe for paths first (:mod:`.names`). Each site's runs and publish
pointer live in ``model/<task>/sites/<site>/`` (the layout of :mod:`lib.models.published`).
"""
