"""Random-weight CNN front-ends (docs/method.md, "Front-ends") and the MFCC baseline.

A front-end is one module here and one YAML file in conf/frontend/ naming its class.
"""

from .base import FrontEnd, LayerInfo

__all__ = ["FrontEnd", "LayerInfo"]
