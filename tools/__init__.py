"""Scripts and offline code the pack never runs: benchmarks, the guidance sweep, the example-workflow generator,
the training code and judge of the built-in tiny-shapes model, and the random weights of the tests and benchmarks
(tiny_weights.py). Run a script as `python tools/<name>.py` (it finds the package through bootstrap.py); tests
import these modules as `scalewise.tools.*` only."""
