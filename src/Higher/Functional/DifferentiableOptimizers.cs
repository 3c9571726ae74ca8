using Higher.Optim;

namespace Higher.Functional;

/// <summary>Differentiable <see cref="Sgd"/> (higher.optim.DifferentiableSGD).</summary>
public sealed class DifferentiableSgd(Sgd other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="Adam"/> (higher.optim.DifferentiableAdam).</summary>
public sealed class DifferentiableAdam(Adam other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="AdamW"/> (higher.optim.DifferentiableAdamW).</summary>
public sealed class DifferentiableAdamW(AdamW other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="Adagrad"/> (higher.optim.DifferentiableAdagrad).</summary>
public sealed class DifferentiableAdagrad(Adagrad other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="Adadelta"/> (higher.optim.DifferentiableAdadelta).</summary>
public sealed class DifferentiableAdadelta(Adadelta other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="Adamax"/> (higher.optim.DifferentiableAdamax).</summary>
public sealed class DifferentiableAdamax(Adamax other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="Asgd"/> (higher.optim.DifferentiableASGD).</summary>
public sealed class DifferentiableAsgd(Asgd other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="RmsProp"/> (higher.optim.DifferentiableRMSprop).</summary>
public sealed class DifferentiableRmsProp(RmsProp other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="Rprop"/> (higher.optim.DifferentiableRprop).</summary>
public sealed class DifferentiableRprop(Rprop other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="NAdam"/> (not in higher, requested in its issues #88 and #140).</summary>
public sealed class DifferentiableNAdam(NAdam other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);

/// <summary>Differentiable <see cref="RAdam"/> (not in higher, requested in its issues #88 and #140).</summary>
public sealed class DifferentiableRAdam(RAdam other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    : DifferentiableOptimizer(other, referenceParams, options);
