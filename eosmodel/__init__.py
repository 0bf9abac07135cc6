"""eosmodel: stepsize tuners, sharpness and the edge of stability.

Subpackages (dependencies point downward only):

* ``eosmodel.tuners``, ``eosmodel.sharpness``, ``eosmodel.trace``: the core (stepsize rules,
  Hessian eigensolvers, the record of a run);
* ``eosmodel.toys``, ``eosmodel.dynamics``: toy losses, reduced maps and the simulator;
* ``eosmodel.train``, ``eosmodel.fit``: real networks, and EOS models fitted to traces;
* ``eosmodel.cli``: the ``eosmodel`` command.
"""

__version__ = "0.1.0"
