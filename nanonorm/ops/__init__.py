"""Reference math: forward and backward by hand, Array API standard only, no validation.

`nanonorm.functional` validates the arguments and dispatches here (or to a fast kernel with the
same signature and cache). Every `*_backward` returns fresh arrays in the order of its forward's
inputs, None for an absent optional parameter.
"""
