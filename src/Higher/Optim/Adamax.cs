namespace Higher.Optim;

/// <summary>Options of <see cref="Adamax"/> (PyTorch's defaults).</summary>
public sealed record AdamaxOptions
{
    /// <summary>Learning rate.</summary>
    public double Lr { get; init; } = 2e-3;
    /// <summary>Decay rates of the first moment and of the infinity norm.</summary>
    public (double Beta1, double Beta2) Betas { get; init; } = (0.9, 0.999);
    /// <summary>Term added to the infinity norm.</summary>
    public double Eps { get; init; } = 1e-8;
    /// <summary>L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Maximize the objective instead of minimizing it.</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["beta1"] = Betas.Beta1, ["beta2"] = Betas.Beta2, ["eps"] = Eps,
        ["weight_decay"] = WeightDecay, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Adamax as torch.optim.Adamax: g ← ±∇ + wd·p; m ← β1·m + (1-β1)·g; u ← max(β2·u, |g| + ε);
/// p ← p - lr/(1-β1^t) · m/u.
/// </summary>
public sealed class Adamax : Optimizer
{
    /// <summary>Adamax over <paramref name="parameters"/>.</summary>
    public Adamax(IEnumerable<Tensor> parameters, AdamaxOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>Adamax over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public Adamax(IEnumerable<ParamGroup> groups, AdamaxOptions? options = null) : base(groups, (options ?? new AdamaxOptions()).ToDictionary())
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
            state["exp_inf"] = Tensor.ZerosLike(param);
        }
        long t = ++state.Step;
        var g = DirectedGradient(param, grad, hyper);
        var b1 = hyper["beta1"];
        var m = b1 * state["exp_avg"] + (1 - b1) * g;
        var u = Tensor.Maximum(hyper["beta2"] * state["exp_inf"], g.Abs() + hyper["eps"]);
        state["exp_avg"] = m;
        state["exp_inf"] = u;
        var clr = hyper["lr"] / (1 - b1.Pow(t));
        return param - clr * m / u;
    }
}
