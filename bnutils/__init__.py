"""bnutils: the code behind the executable book on why batch normalization works.

The package has four layers; imports only flow downward (a test checks it):

- ``bnutils.infra``: configuration and profiles (``config``), argument checks (``validate``),
  the disk cache (``cache``), the figure style (``plotting``) and what a chapter reports
  (``report``: setup, glued numbers, claims table, run record).
- ``bnutils.core``: what every chapter uses: the BN transform and its variants (``bn``), data
  (``data``), models (``models``), the training loop (``train``) and probes that leave a model as
  they found it (``probes``).
- ``bnutils.measure``: chapter-agnostic measurement maths: rates and confidence intervals
  (``stats``), covariances and the length-direction reparametrisation (``linalg``), the Rayleigh
  quotient (``rayleigh``), distribution shift (``shift``).
- ``bnutils.chapters``: one module per chapter, named after its notebook
  (``book/02_ics.ipynb`` -> ``bnutils.chapters.ics``): its profile values (``PROFILES``),
  experiment drivers, figures and claims. No chapter module imports another.

On top sit the tools: ``bnutils.cli`` (``python -m bnutils``) and ``bnutils.benchmark``.
"""
__version__ = "0.2.0"
