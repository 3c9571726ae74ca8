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
