"""Artifacts deployed to existing serving engines: Ray Serve (`ray_app`) and a Triton Inference
Server model repository (`triton_repo`, whose Python model is `triton_bls`). In both, speedy's
own loops (the chain, the vocoder's stream, a codec's decode) run over graph sessions whose
runs go to the engine's model replicas (`remote`)."""

# Beside a Triton repository's model.py: the artifacts' manifests and the graph models they use.
TRITON_PLAN = "speedy_plan.json"
