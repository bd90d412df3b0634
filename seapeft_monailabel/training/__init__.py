"""Pretraining the base model: the recipe, the run, and its model card (a layer above ``evaluate``).

- :mod:`.pretrain`: :class:`PretrainRecipe`, :func:`pretrain`, :func:`write_subjects`.
- :mod:`.model_card`: the training curve and ``MODEL_CARD.md`` written beside the model.
"""

from .pretrain import PretrainRecipe, PretrainResult, pretrain, write_subjects

__all__ = ["PretrainRecipe", "PretrainResult", "pretrain", "write_subjects"]
