"""Quantized inference: modes ("none", "int8", "nf4", "fp8"), one backend module each, chosen per device by
`core.quant.modes`; `apply` swaps Linear layers by rule, `checkpoint` saves and loads the result as safetensors."""
