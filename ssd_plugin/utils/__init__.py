from .cpu_features import active_cpuid_mask, cpu_flags, describe_isa

__all__ = ['active_cpuid_mask', 'cpu_flags', 'describe_isa']
