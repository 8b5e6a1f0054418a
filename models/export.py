"""A stored network as an ONNX file that answers what POST /v1/runs/{id}/predict answers.

The graph takes N×C×H×W float32 inputs at the trained input size and the dataset's pixel scale (what the
service is sent), normalises them with the run's mean and std, runs the network in eval mode and gives
N×classes probabilities (softmax). N is dynamic. Resizing is left out: the service resizes other sizes
bilinearly, which a caller of the ONNX file does before feeding it.
"""

from __future__ import annotations

import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import nn

from models.datasets import normalize
from models.ensemble import Member

INPUT_NAME, OUTPUT_NAME = "inputs", "probs"
OPSET = 18
# torch.export traces through process-wide state (dynamo's caches, fake tensor modes): one export at a time.
_exporting = threading.Lock()


class ServedNetwork(nn.Module):
    """Normalisation, the network and the softmax, as one module for the exporter."""

    def __init__(self, network: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.network, self.mean, self.std = network, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(normalize(x, self.mean, self.std)), dim=-1)


def onnx_bytes(member: Member) -> bytes:
    """The member's network as an ONNX model (see the module's docstring for what it takes and gives)."""
    served = ServedNetwork(member.build(), member.mean, member.std).eval()
    # Two samples: torch.export specialises a dimension traced at size 1 instead of keeping it dynamic.
    example = torch.zeros(2, *member.input_shape)
    # The torch.export-based exporter (onnxscript): the default since torch 2.9, where the TorchScript one
    # is deprecated; torch >= 2.6 has it with these arguments.
    with _exporting, warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        warnings.simplefilter("ignore")  # its deprecation notes are the exporter's own business
        program = torch.onnx.export(
            served,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=OPSET,
            verbose=False,
        )
        path = Path(scratch) / "model.onnx"
        program.save(str(path))
        return path.read_bytes()
