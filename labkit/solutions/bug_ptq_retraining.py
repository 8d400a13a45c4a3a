import copy

import torch
from torch import nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer, get_default_x86_inductor_quantization_config)


@torch.no_grad()  # calibration is forward passes only: no gradients, no optimizer, no weight updates
def post_training_quantize(model: nn.Module, loader, epochs: int = 1, lr: float = 1e-3) -> torch.fx.GraphModule:
    """Post-training static INT8 quantization (PT2E, X86InductorQuantizer) of a trained model.

    PTQ never trains: static PTQ only observes activation ranges on a few input batches (labels unused),
    dynamic PTQ needs no data at all. Quantization-aware training is the method that trains. `epochs` and
    `lr` are kept for callers of the old signature and ignored.
    """
    model = copy.deepcopy(model).eval()  # the validated fp32 model stays exactly as it was
    example = next(iter(loader))[0]
    batch = torch.export.Dim("batch", min=1)
    graph = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)
    for X, _ in loader:  # inputs only: the labels are never read
        prepared(X)
    return convert_pt2e(prepared)
