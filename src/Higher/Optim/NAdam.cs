namespace Higher.Optim;

/// <summary>Options of <see cref="NAdam"/> (PyTorch's defaults).</summary>
public sealed record NAdamOptions
{
    /// <summary>Learning rate.</summary>
    public double Lr { get; init; } = 2e-3;
    /// <summary>Decay rates of the first and second moment estimates.</summary>
    public (double Beta1, double Beta2) Betas { get; init; } = (0.9, 0.999);
    /// <summary>Term added to the denominator.</summary>
    public double Eps { get; init; } = 1e-8;
    /// <summary>L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Momentum decay ψ of the momentum schedule μ_t = β1·(1 - ½·0.96^(t·ψ)).</summary>
    public double MomentumDecay { get; init; } = 4e-3;
    /// <summary>Maximize the objective instead of minimizing it (torch 1.13's NAdam lacks this flag; later versions have it).</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["beta1"] = Betas.Beta1, ["beta2"] = Betas.Beta2, ["eps"] = Eps,
        ["weight_decay"] = WeightDecay, ["momentum_decay"] = MomentumDecay, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Adam with Nesterov momentum as torch.optim.NAdam (1.13): g ← ±∇ + wd·p;
/// μ_t = β1·(1 - ½·0.96^(t·ψ)), μ_{t+1} likewise; Π ← Π·μ_t (state mu_product, from 1);
/// m ← β1·m + (1-β1)·g; v ← β2·v + (1-β2)·g²; d = √(v/(1-β2^t)) + ε;
/// p ← p - lr·(1-μ_t)/(1-Π) · g/d - lr·μ_{t+1}/(1-Π·μ_{t+1}) · m/d.
/// </summary>
public sealed class NAdam : Optimizer
{
    /// <summary>NAdam over <paramref name="parameters"/>.</summary>
    public NAdam(IEnumerable<Tensor> parameters, NAdamOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>NAdam over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public NAdam(IEnumerable<ParamGroup> groups, NAdamOptions? options = null) : base(groups, (options ?? new NAdamOptions()).ToDictionary())
    {
    }

    /// <inheritdoc/>
    public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(param);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        if (!state.Has("exp_avg"))
        {
            state["mu_product"] = param.ScalarLike(1);
            state["exp_avg"] = Tensor.ZerosLike(param);
            state["exp_avg_sq"] = Tensor.ZerosLike(param);
        }
        long t = ++state.Step;
        var b1 = hyper["beta1"];
        var b2 = hyper["beta2"];
        var psi = hyper["momentum_decay"];
        var biasCorrection2 = 1 - b2.Pow(t);
        var g = DirectedGradient(param, grad, hyper);
        HyperValue decay = 0.96;
        var mu = b1 * (1.0 - 0.5 * decay.Pow(t * psi));
        var muNext = b1 * (1.0 - 0.5 * decay.Pow((t + 1) * psi));
        var muProduct = (HyperValue)state["mu_product"] * mu;
        var muProductNext = muProduct * mu * muNext;
        state["mu_product"] = muProduct.AsTensor(param);
        var m = b1 * state["exp_avg"] + (1 - b1) * g;
        var v = b2 * state["exp_avg_sq"] + (1 - b2) * g * g;
        state["exp_avg"] = m;
        state["exp_avg_sq"] = v;
        var denom = (v / biasCorrection2).SafeSqrt() + hyper["eps"];
        var lr = hyper["lr"];
        param = param - lr * (1.0 - mu) / (1.0 - muProduct) * g / denom;
        return param - lr * muNext / (1.0 - muProductNext) * m / denom;
    }
}
