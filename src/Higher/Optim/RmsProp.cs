namespace Higher.Optim;

/// <summary>Options of <see cref="RmsProp"/> (PyTorch's defaults).</summary>
public sealed record RmsPropOptions
{
    /// <summary>Learning rate.</summary>
    public double Lr { get; init; } = 1e-2;
    /// <summary>Smoothing constant α of the squared-gradient average.</summary>
    public double Alpha { get; init; } = 0.99;
    /// <summary>Term added to the denominator.</summary>
    public double Eps { get; init; } = 1e-8;
    /// <summary>L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Momentum factor.</summary>
    public double Momentum { get; init; }
    /// <summary>Normalize by an estimate of the gradient's variance instead of its second moment.</summary>
    public bool Centered { get; init; }
    /// <summary>Maximize the objective instead of minimizing it.</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["alpha"] = Alpha, ["eps"] = Eps, ["weight_decay"] = WeightDecay, ["momentum"] = Momentum,
        ["centered"] = Centered ? 1 : 0, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// RMSprop as torch.optim.RMSprop: g ← ±∇ + wd·p; s ← α·s + (1-α)·g²; centered: ḡ ← α·ḡ + (1-α)·g
/// and a = √(s - ḡ²) + ε, else a = √s + ε; with momentum μ &gt; 0: b ← μ·b + g/a, p ← p - lr·b;
/// else p ← p - lr·g/a.
/// </summary>
public sealed class RmsProp : Optimizer
{
    /// <summary>RMSprop over <paramref name="parameters"/>.</summary>
    public RmsProp(IEnumerable<Tensor> parameters, RmsPropOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>RMSprop over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public RmsProp(IEnumerable<ParamGroup> groups, RmsPropOptions? options = null) : base(groups, (options ?? new RmsPropOptions()).ToDictionary())
    {
    }

    /// <inheritdoc/>
    protected override void Validate(ParamGroup group)
    {
        base.Validate(group);
        Require(group, "alpha", v => v >= 0, "must be ≥ 0");
    }

    /// <inheritdoc/>
    public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(param);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        var momentum = hyper["momentum"];
        bool useMomentum = momentum.IsTensor || momentum.Value > 0;
        bool centered = hyper.Flag("centered");
        if (!state.Has("square_avg"))
        {
            state["square_avg"] = Tensor.ZerosLike(param);
        }
        if (useMomentum && !state.Has("momentum_buffer"))
        {
            state["momentum_buffer"] = Tensor.ZerosLike(param);
        }
        if (centered && !state.Has("grad_avg"))
        {
            state["grad_avg"] = Tensor.ZerosLike(param);
        }
        state.Step++;
        var g = DirectedGradient(param, grad, hyper);
        var alpha = hyper["alpha"];
        var squareAvg = alpha * state["square_avg"] + (1 - alpha) * g * g;
        state["square_avg"] = squareAvg;
        Tensor avg;
        if (centered)
        {
            var gradAvg = alpha * state["grad_avg"] + (1 - alpha) * g;
            state["grad_avg"] = gradAvg;
            avg = (squareAvg - gradAvg * gradAvg).SafeSqrt();
        }
        else
        {
            avg = squareAvg.SafeSqrt();
        }
        avg = avg + hyper["eps"];
        var lr = hyper["lr"];
        if (useMomentum)
        {
            var buf = momentum * state["momentum_buffer"] + g / avg;
            state["momentum_buffer"] = buf;
            return param - lr * buf;
        }
        return param - lr * g / avg;
    }
}
