from .derived_weights import DerivedWeights, version_key

__all__ = ['DerivedWeights', 'version_key']
