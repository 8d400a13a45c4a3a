"""Explanations that are checked, not just drawn: Captum, SHAP and LIME attributions over the course's own
models (trained), the checks each method must pass (checks), the tabular shortcut hunt (tabular), what an
explanation costs (cost) and what explanation traffic does to a server's predictions (load).

Nothing heavy is imported here: shap, lime and captum load inside the functions that use them.
Taught in 13_explainability.
"""
