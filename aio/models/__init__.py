"""Model plugins (kind ``model``, config group ``model``): ``chartnet``, ``knn_analogs``, ``none``.

    model = registry.get("model", "chartnet")(ChartNetConfig())
    result = model.fit(ModelContext(dataset_path, out_dir, seed, trainer, bars, store))
    run.predictions.update(result.bar_series(len(bars)))     # model.p_up, model.confidence, ...

A third-party model is a class with ``fit(ctx) -> ModelResult`` registered with a typed
config: ``registry.add("model", "mine", MyModel, config=MyConfig)``. See docs/models.md.
torch and lightning are imported only when a model is built.
"""

from __future__ import annotations

from aio.models.config import ChartNetConfig, KnnAnalogsConfig, ModelCommon, NoModelConfig

__all__ = ["ChartNetConfig", "KnnAnalogsConfig", "ModelCommon", "NoModel", "NoModelConfig", "make_chartnet",
           "make_knn_analogs", "register"]


def make_chartnet(config: ChartNetConfig):
    """CNN image encoder + feature MLP, walk-forward trained with Lightning."""
    from aio.models.chartnet_model import ChartNetModel

    return ChartNetModel(config)


def make_knn_analogs(config: KnnAnalogsConfig):
    """Outcomes of the k most similar past patterns (no training)."""
    from aio.models.knn import KnnAnalogsModel

    return KnnAnalogsModel(config)


class NoModel:
    """No model: the dataset/train/infer/store stages are skipped."""

    name = "none"

    def __init__(self, config: NoModelConfig | None = None) -> None:
        self.cfg = config or NoModelConfig()

    def fit(self, ctx):  # pragma: no cover - the pipeline never calls it
        raise RuntimeError("model=none fits nothing")


def register(registry) -> None:
    registry.add("model", "chartnet", make_chartnet, config=ChartNetConfig,
                 description="small CNN over chart images + MLP over features; walk-forward, calibrated")
    registry.add("model", "knn_analogs", make_knn_analogs, config=KnnAnalogsConfig,
                 description="outcomes of the k most similar past charts from the pattern library (no training)")
    registry.add("model", "none", NoModel, config=NoModelConfig, description="no model: rules cannot read model.*")
