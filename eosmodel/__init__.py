"""eosmodel: stepsize tuners, sharpness and the edge of stability.

Subpackages (dependencies point downward only):

* ``eosmodel.tuners``, ``eosmodel.sharpness``, ``eosmodel.trace``: the core (stepsize rules,
  Hessian eigensolvers, the record of a run);
* ``eosmodel.toys``, ``eosmodel.dynamics``: toy losses, reduced maps and the simulator;
* ``eosmodel.train``, ``eosmodel.fit``: real networks, and EOS models fitted to traces;
* ``eosmodel.monitor`` (``eosmodel.Monitor``): sharpness tracking and the trace in your own loop;
* ``eosmodel.cli``: the ``eosmodel`` command.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``eosmodel.Monitor``, imported on first use (``import eosmodel`` stays light)."""
    if name == "Monitor":
        from eosmodel.monitor import Monitor

        return Monitor
    raise AttributeError(f"module 'eosmodel' has no attribute {name!r}")
