namespace Higher.Optim;

/// <summary>Options of <see cref="Adadelta"/> (PyTorch's defaults).</summary>
public sealed record AdadeltaOptions
{
    /// <summary>Coefficient that scales the delta before it is applied.</summary>
    public double Lr { get; init; } = 1.0;
    /// <summary>Decay rate ρ of the running averages.</summary>
    public double Rho { get; init; } = 0.9;
    /// <summary>Term added inside the square roots.</summary>
    public double Eps { get; init; } = 1e-6;
    /// <summary>L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Maximize the objective instead of minimizing it.</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["rho"] = Rho, ["eps"] = Eps, ["weight_decay"] = WeightDecay, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Adadelta as torch.optim.Adadelta: g ← ±∇ + wd·p; s ← ρ·s + (1-ρ)·g²;
/// δ ← √(u + ε)/√(s + ε)·g; u ← ρ·u + (1-ρ)·δ²; p ← p - lr·δ.
/// </summary>
public sealed class Adadelta : Optimizer
{
    /// <summary>Adadelta over <paramref name="parameters"/>.</summary>
    public Adadelta(IEnumerable<Tensor> parameters, AdadeltaOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>Adadelta over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public Adadelta(IEnumerable<ParamGroup> groups, AdadeltaOptions? options = null) : base(groups, (options ?? new AdadeltaOptions()).ToDictionary())
    {
    }

    /// <inheritdoc/>
    protected override void Validate(ParamGroup group)
    {
        base.Validate(group);
        Require(group, "rho", v => v is >= 0 and <= 1, "must lie in [0, 1]");
    }

    /// <inheritdoc/>
    public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(param);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        if (!state.Has("square_avg"))
        {
            state["square_avg"] = Tensor.ZerosLike(param);
            state["acc_delta"] = Tensor.ZerosLike(param);
        }
        state.Step++;
        var g = DirectedGradient(param, grad, hyper);
        var rho = hyper["rho"];
        var eps = hyper["eps"];
        var squareAvg = rho * state["square_avg"] + (1 - rho) * g * g;
        var std = (squareAvg + eps).SafeSqrt();
        var delta = (state["acc_delta"] + eps).SafeSqrt() / std * g;
        state["square_avg"] = squareAvg;
        state["acc_delta"] = rho * state["acc_delta"] + (1 - rho) * delta * delta;
        return param - hyper["lr"] * delta;
    }
}
