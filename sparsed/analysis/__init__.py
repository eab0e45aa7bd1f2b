"""Analysis of attention in diffusion LMs: the recorder any run can switch on, and the computations behind the
notebooks in ``analysis/`` (head statistics, step similarity, the early-step ablation, sweeps, result tables).

Notebooks load, compute through these modules and plot; nothing here draws a figure except ``plots``.
"""
