"""Training the project's small masked-diffusion LM (LLaDA architecture) on generated RULER-style data.

``data``: batches built on the fly; ``loss``: LLaDA's SFT objective; ``checkpoint``: resumable state
and the LLaDA-layout export; ``trainer``: the loop; ``plot``: the loss curve.
"""
