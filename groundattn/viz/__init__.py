"""Visualisation of one sample's attention (METHOD §8).

The functions draw tensors they are given; they run no model. Start from the
encoder's batch output with :func:`select_sample`, label the tokens with
:func:`token_labels`, then:

- bertviz views: :func:`write_head_view`, :func:`write_model_view` (HTML);
- a phrase's attention over the regions on the image:
  :func:`phrase_region_attention`, then :func:`plot_head_grid`,
  :func:`plot_layer_average`, :func:`plot_rollout` or :func:`draw_phrase_attention`;
- several models side by side: :func:`plot_compare`;
- grounding accuracy per layer and head: :func:`plot_grounding_accuracy`;
- :func:`save_figure` writes any of the figures.

:mod:`groundattn.viz.run` is the exception that runs models: :func:`visualize`
reads a sample of a data set (:mod:`groundattn.viz.scene`), runs one or several
trained encoders on it (:mod:`groundattn.viz.models`) and writes all of the
above; :func:`grounding_report` (:mod:`groundattn.viz.grounding`) draws
grounding accuracy over a split. Both are imported on first use (they load the
model and data stack).

Shapes: L layers, H heads, N sequence (valid positions of one sample),
R regions (r0 included).
"""

import importlib

from groundattn.viz.compare import plot_compare
from groundattn.viz.heatmap import plot_grounding_accuracy
from groundattn.viz.html import (
    head_view_html,
    model_view_html,
    write_head_view,
    write_model_view,
)
from groundattn.viz.image import (
    draw_phrase_attention,
    phrase_region_attention,
    plot_head_grid,
    plot_layer_average,
    plot_rollout,
    save_figure,
)
from groundattn.viz.labels import layout_positions, region_label, token_labels
from groundattn.viz.panels import draw_regions
from groundattn.viz.sample import SampleAttention, select_sample

_LAZY = {  # name: its module, imported on first use
    "OUTPUTS": "run",
    "VisualizeError": "errors",
    "grounding_report": "grounding",
    "visualize": "run",
}


def __getattr__(name: str):
    if name in _LAZY:  # lazily: importing the encoder and data stack takes seconds
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OUTPUTS",
    "SampleAttention",
    "VisualizeError",
    "draw_phrase_attention",
    "draw_regions",
    "grounding_report",
    "head_view_html",
    "layout_positions",
    "model_view_html",
    "phrase_region_attention",
    "plot_compare",
    "plot_grounding_accuracy",
    "plot_head_grid",
    "plot_layer_average",
    "plot_rollout",
    "region_label",
    "save_figure",
    "select_sample",
    "token_labels",
    "visualize",
    "write_head_view",
    "write_model_view",
]
