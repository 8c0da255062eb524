"""Chapter-agnostic measurement maths: rates and intervals, linear algebra, distribution shift."""
