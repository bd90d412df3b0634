"""MONAI Label app for SEA-PEFT: few-shot adaptation of a pretrained 3D segmentation model to a new site.

    monailabel start_server --app apps/seapeft --studies <folder or DICOMweb URL> [--conf key value ...]

Task configs are the ``TaskConfig`` classes in ``lib/configs`` (``--conf models all`` or a comma list;
today one: ``seapeft``). Every other ``--conf`` key is described in ``lib/configs/conf.py`` and the
README. The app is a thin layer: training is ``seapeft_monailabel.search.run_search``, model loading is
``seapeft_monailabel.models.load_base_model`` / ``seapeft_monailabel.peft.load_merged_model``.
Construction reads no weights (MONAI Label builds the app again in every training subprocess). With
``--conf sites``, :meth:`SeaPeftApp.infer` names each request's site (``lib.sites.resolve``) before the
task runs, so the task answers with that site's adapter.
"""

from __future__ import annotations

import importlib
import logging
import os

import lib.configs
from lib.datastore.checked import CheckedDatastore, datastore_extensions
from lib.datastore.dicomweb import dicomweb_datastore, put_venv_on_path, search_filter
from lib.errors import BAD_INPUT, http_error
from lib.infers.batch import SeaPeftBatchInfer
from lib.routes import add_report_route
from lib.sites.names import SiteNameError
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.class_utils import get_class_names

logger = logging.getLogger(__name__)

VERSION = "0.1.0"


def _task_configs(conf: dict) -> dict:
    """``{name: TaskConfig class}`` selected by ``--conf models`` (default ``all``)."""
    available = {}
    for qualified in get_class_names(lib.configs, "TaskConfig"):
        module_name, class_name = qualified.rsplit(".", 1)
        module = importlib.import_module(module_name)
        available[module_name.split(".")[-1].lower()] = getattr(module, class_name)
    wanted = conf.get("models", "all")
    names = list(available) if wanted == "all" else [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"--conf models: unknown {unknown}; available: all, {', '.join(sorted(available))}")
    return {n: available[n] for n in names}


class SeaPeftApp(MONAILabelApp):
    """Registers, for each selected task config: infer task, train task, uncertainty strategy, Dice scoring."""

    def __init__(self, app_dir, studies, conf):
        self.model_dir = os.path.join(app_dir, "model")
        self.task_configs = {}
        for name, cls in _task_configs(conf).items():
            config = cls()
            config.init(name, self.model_dir, conf, None)
            self.task_configs[name] = config
        # not `self.labels`: the base class resets that attribute (it is passed as labels= below)
        self.task_labels = {}
        for config in self.task_configs.values():
            self.task_labels.update(config.labels)
        # /info "labels": foreground names in index order, a list as in MONAI Label's sample apps (OHIF's
        # panel appends to it); the name -> index mapping is under /info "seapeft" <task> "labels"
        names = [name for name, index in sorted(self.task_labels.items(), key=lambda kv: kv[1]) if index]
        self.sites = next(iter(self.task_configs.values())).sites  # one --conf, so one site rule for every task
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="SEA-PEFT",
                         description="Few-shot adaptation of a pretrained 3D segmentation model with SEA-PEFT",
                         version=VERSION, labels=names)
        auto = all(config.app_conf.auto_scoring for config in self.task_configs.values())
        self._auto_update_scoring = bool(settings.MONAI_LABEL_AUTO_UPDATE_SCORING and auto)

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            self.studies = self.studies.rstrip("/").strip()
            put_venv_on_path()  # dcmqi's itkimage2segimage from the dcmqi wheel: nothing is downloaded
            self._download_dcmqi_tools()  # MONAI Label's check: a no-op when the tool is on PATH
            conf_filters = [c.app_conf.dicomweb_search_filter for c in self.task_configs.values()]
            return dicomweb_datastore(self.studies, search_filter(next(filter(None, conf_filters), None)))
        return CheckedDatastore(self.studies, task_labels=self.task_labels, sites=self.sites.enabled,
                                extensions=datastore_extensions(settings.MONAI_LABEL_DATASTORE_FILE_EXT),
                                auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                                read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def infer(self, request, datastore=None):
        """MONAI Label's infer, with the request's site named first (``site``, ``site_source``; HTTP 400 when unsafe)."""
        try:
            site = self.sites.of_request(request, datastore or self.datastore())
        except SiteNameError as err:
            raise http_error(BAD_INPUT, str(err)) from None
        return super().infer({**request, "site": site.name, "site_source": site.source}, datastore)

    def init_infers(self):
        return {k: v for config in self.task_configs.values() for k, v in config.infer().items()}

    def init_trainers(self):
        return {name: config.trainer() for name, config in self.task_configs.items()}

    def init_strategies(self):
        strategies = {"random": Random(), "first": First()}
        for config in self.task_configs.values():
            strategies.update(config.strategy())
        return strategies

    def init_batch_infer(self):
        return SeaPeftBatchInfer()

    def init_scoring_methods(self):
        return {k: v for config in self.task_configs.values() for k, v in config.scoring_method().items()}

    def info(self):
        meta = super().info()
        meta["seapeft"] = {name: config.describe() for name, config in self.task_configs.items()}
        return meta

    def on_init_complete(self):
        # only in the server process, after the server was built
        from monailabel.app import app as server

        add_report_route(server, {name: config.path for name, config in self.task_configs.items()})
        super().on_init_complete()
