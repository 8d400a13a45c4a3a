"""Model security and privacy: safe loading, encryption at rest, signed manifests, DP-SGD, membership inference.

One idea per module; heavy libraries (cryptography, safetensors, opacus) are imported inside functions, so
`import labkit.secure` stays fast. Taught in 15_security_and_privacy.
"""
