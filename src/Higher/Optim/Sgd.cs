namespace Higher.Optim;

/// <summary>Options of <see cref="Sgd"/> (PyTorch's defaults).</summary>
public sealed record SgdOptions
{
    /// <summary>Learning rate.</summary>
    public double Lr { get; init; } = 1e-3;
    /// <summary>Momentum factor μ.</summary>
    public double Momentum { get; init; }
    /// <summary>Dampening of the momentum buffer's gradient term.</summary>
    public double Dampening { get; init; }
    /// <summary>L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Nesterov momentum (needs momentum &gt; 0 and zero dampening).</summary>
    public bool Nesterov { get; init; }
    /// <summary>Maximize the objective instead of minimizing it.</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["momentum"] = Momentum, ["dampening"] = Dampening, ["weight_decay"] = WeightDecay,
        ["nesterov"] = Nesterov ? 1 : 0, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Stochastic gradient descent as torch.optim.SGD: g ← ±∇ + wd·p; with momentum μ, b ← g on the
/// first step, then b ← μ·b + (1 - dampening)·g, and g ← g + μ·b (Nesterov) or b; p ← p - lr·g.
/// </summary>
public sealed class Sgd : Optimizer
{
    /// <summary>SGD over <paramref name="parameters"/>.</summary>
    public Sgd(IEnumerable<Tensor> parameters, SgdOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>SGD over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public Sgd(IEnumerable<ParamGroup> groups, SgdOptions? options = null) : base(groups, (options ?? new SgdOptions()).ToDictionary())
    {
    }

    /// <inheritdoc/>
    protected override void Validate(ParamGroup group)
    {
        base.Validate(group);
        if (group.Flag("nesterov") && (group["momentum"] <= 0 || group["dampening"] != 0))
        {
            throw new ArgumentException($"Nesterov momentum requires a momentum > 0 and zero dampening; got momentum {group["momentum"]} and dampening {group["dampening"]}.");
        }
    }

    /// <inheritdoc/>
    public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        state.Step++;
        var g = DirectedGradient(param, grad, hyper);
        var mu = hyper["momentum"];
        if (mu.IsTensor || mu.Value != 0)
        {
            Tensor buf = state.Has("momentum_buffer")
                ? mu * state["momentum_buffer"] + (1 - hyper["dampening"]) * g
                : g;
            state["momentum_buffer"] = buf;
            g = hyper.Flag("nesterov") ? g + mu * buf : buf;
        }
        var lr = hyper["lr"];
        // p - lr·g in one kernel and one tape node (the bits of the composed form) when lr is a number.
        return lr.IsTensor ? param - lr * g : Tensor.AddScaled(param, g, -lr.Value);
    }
}
