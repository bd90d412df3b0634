"""Batch inference over the datastore: ``POST /batch/infer/seapeft?images=unlabeled`` (or ``all``, ``labeled``).

MONAI Label runs it as a background task in a subprocess (one at a time; ``GET /batch/infer`` shows its
status and log lines, ``DELETE /batch/infer`` stops it). Every image goes through the app's own infer
task (the served model: latest published adapted model, else the base model) and its prediction is
saved in the datastore under the label tag ``original`` (``label_tag`` in the request changes it);
training never reads that tag.

Differences from MONAI Label's ``BatchInferTask`` (which it extends), for this app:

* images run one after the other in the task's process: the infer task runs its windows on the
  configured device, and on a CPU machine parallel volumes only compete for the same cores; MONAI
  Label's default ``multi_gpu`` split across CUDA devices would also divide by zero without one;
* an image that cannot be segmented (not a 3D volume, unreadable) is reported with its reason and the
  batch goes on; the batch fails only when every image failed;
* ``unlabeled`` / ``labeled`` mean without / with a ``final`` label (the training labels), whatever
  tag the predictions are saved with (MONAI Label selects by that tag, so a second run over
  ``unlabeled`` would find nothing to do);
* progress is one log line per image, ``batch infer <done>/<total>: <image> ...``, which the server
  relays to ``GET /batch/infer`` ``details``.
"""

from __future__ import annotations

import logging
import time

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.batch_infer import (
    BatchInferImageType,
    BatchInferTask,
    run_infer_task,
)

logger = logging.getLogger(__name__)


def error_text(err: Exception) -> str:
    """The message of an infer failure: FastAPI's ``detail``, MONAI Label's ``msg``, else the exception."""
    return str(getattr(err, "detail", None) or getattr(err, "msg", None) or f"{type(err).__name__}: {err}")


class SeaPeftBatchInfer(BatchInferTask):
    """Segment every selected image with the app's infer task and save each prediction in the datastore."""

    def get_images(self, request: dict, datastore: Datastore) -> list[str]:
        """Image ids: ``all``, ``labeled`` / ``unlabeled`` (by ``final`` labels), or an explicit list."""
        images = request.get("images", BatchInferImageType.IMAGES_ALL)
        if images == BatchInferImageType.IMAGES_LABELED:
            return datastore.get_labeled_images(DefaultLabelTag.FINAL)
        if images == BatchInferImageType.IMAGES_UNLABELED:
            return datastore.get_unlabeled_images(DefaultLabelTag.FINAL)
        return datastore.list_images() if isinstance(images, str) else list(images)

    def __call__(self, request: dict, datastore: Datastore, infer) -> dict:
        """Returns ``{image_id: {"label": saved label id, "model": model id} | {"error": message}}``."""
        image_ids = sorted(self.get_images(request, datastore))
        if request.get("max_batch_size", 0) > 0:
            image_ids = image_ids[: request["max_batch_size"]]
        label_tag = request.get("label_tag", DefaultLabelTag.ORIGINAL)
        total, started = len(image_ids), time.monotonic()
        logger.info(f"batch infer 0/{total}: model {request.get('model')}, images {request.get('images', 'all')}, "
                    f"predictions saved with label tag {label_tag}")
        results: dict[str, dict] = {}
        for done, image_id in enumerate(image_ids, 1):
            single = {k: v for k, v in request.items() if k not in ("images", "max_batch_size", "_id")}
            single.update(image=image_id, save_label=True, label_tag=label_tag)
            try:
                reply = run_infer_task(single, datastore, infer)
            except Exception as err:  # noqa: BLE001 - one bad image must not stop the batch; its reason is reported
                results[image_id] = {"error": error_text(err)}
                logger.error(f"batch infer {done}/{total}: {image_id} failed: {results[image_id]['error']}")
                continue
            model = (reply.get("params") or {}).get("model", {}).get("id")
            results[image_id] = {"label": reply.get("label"), "model": model}
            logger.info(f"batch infer {done}/{total}: {image_id} -> label tag {label_tag} (model {model})")
        failed = [i for i, r in results.items() if "error" in r]
        logger.info(f"batch infer done: {total - len(failed)} of {total} predictions saved in "
                    f"{time.monotonic() - started:.1f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
        if total and len(failed) == total:
            reasons = "; ".join(f"{i}: {results[i]['error']}" for i in failed)
            raise RuntimeError(f"batch infer: every image failed ({reasons})")
        return results
