"""The reference implementation's op table, in the form dispatch expects of every kernel set."""
from .adamw import adamw_step
from .attention import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward
from .embedding import embedding_backward, embedding_forward
from .gelu import gelu_backward, gelu_forward
from .layernorm import layer_norm_backward, layer_norm_forward
from .linear import linear_backward, linear_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

KERNELS = {f.__name__: f for f in (
    layer_norm_forward, layer_norm_backward,
    softmax_forward, softmax_backward, log_softmax_forward, log_softmax_backward,
    scaled_dot_product_attention_forward, scaled_dot_product_attention_backward,
    gelu_forward, gelu_backward, linear_forward, linear_backward,
    embedding_forward, embedding_backward, cross_entropy_forward, cross_entropy_backward,
    adamw_step,
)}
