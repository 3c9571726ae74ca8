namespace Higher.Optim;

/// <summary>Options of <see cref="RAdam"/> (PyTorch's defaults).</summary>
public sealed record RAdamOptions
{
    /// <summary>Learning rate.</summary>
    public double Lr { get; init; } = 1e-3;
    /// <summary>Decay rates of the first and second moment estimates.</summary>
    public (double Beta1, double Beta2) Betas { get; init; } = (0.9, 0.999);
    /// <summary>Term added to the denominator.</summary>
    public double Eps { get; init; } = 1e-8;
    /// <summary>L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Maximize the objective instead of minimizing it (torch 1.13's RAdam lacks this flag; later versions have it).</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["beta1"] = Betas.Beta1, ["beta2"] = Betas.Beta2, ["eps"] = Eps,
        ["weight_decay"] = WeightDecay, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Rectified Adam as torch.optim.RAdam (1.13): g ← ±∇ + wd·p; m ← β1·m + (1-β1)·g;
/// v ← β2·v + (1-β2)·g²; m̂ = m/(1-β1^t); ρ∞ = 2/(1-β2) - 1; ρ_t = ρ∞ - 2t·β2^t/(1-β2^t).
/// When ρ_t &gt; 5: r = √((ρ_t-4)(ρ_t-2)ρ∞/((ρ∞-4)(ρ∞-2)ρ_t)) and
/// p ← p - m̂·lr·√(1-β2^t)/(√v + ε)·r; otherwise p ← p - m̂·lr. The switch is decided on the
/// values of the hyperparameters (it depends on t and β2 only).
/// </summary>
public sealed class RAdam : Optimizer
{
    /// <summary>RAdam over <paramref name="parameters"/>.</summary>
    public RAdam(IEnumerable<Tensor> parameters, RAdamOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>RAdam over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public RAdam(IEnumerable<ParamGroup> groups, RAdamOptions? options = null) : base(groups, (options ?? new RAdamOptions()).ToDictionary())
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
            state["exp_avg"] = Tensor.ZerosLike(param);
            state["exp_avg_sq"] = Tensor.ZerosLike(param);
        }
        long t = ++state.Step;
        var b1 = hyper["beta1"];
        var b2 = hyper["beta2"];
        var biasCorrection1 = 1 - b1.Pow(t);
        var biasCorrection2 = 1 - b2.Pow(t);
        var g = DirectedGradient(param, grad, hyper);
        var m = b1 * state["exp_avg"] + (1 - b1) * g;
        var v = b2 * state["exp_avg_sq"] + (1 - b2) * g * g;
        state["exp_avg"] = m;
        state["exp_avg_sq"] = v;
        var corrected = m / biasCorrection1;
        var lr = hyper["lr"];
        var rhoInf = 2 / (1 - b2) - 1;
        var rhoT = rhoInf - 2 * t * b2.Pow(t) / biasCorrection2;
        if (rhoT.Value > 5)
        {
            var rect = ((rhoT - 4) * (rhoT - 2) * rhoInf / ((rhoInf - 4) * (rhoInf - 2) * rhoT)).Sqrt();
            var adaptiveLr = biasCorrection2.Sqrt() / (v.SafeSqrt() + hyper["eps"]);
            return param - corrected * lr * adaptiveLr * rect;
        }
        return param - corrected * lr;
    }
}
