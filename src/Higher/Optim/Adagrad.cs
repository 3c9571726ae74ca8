namespace Higher.Optim;

/// <summary>Options of <see cref="Adagrad"/> (PyTorch's defaults).</summary>
public sealed record AdagradOptions
{
    /// <summary>Learning rate.</summary>
    public double Lr { get; init; } = 1e-2;
    /// <summary>Decay of the learning rate: the step t uses lr/(1 + (t - 1)·lr_decay).</summary>
    public double LrDecay { get; init; }
    /// <summary>L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Starting value of the accumulated squared gradients.</summary>
    public double InitialAccumulatorValue { get; init; }
    /// <summary>Term added to the denominator.</summary>
    public double Eps { get; init; } = 1e-10;
    /// <summary>Maximize the objective instead of minimizing it.</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["lr_decay"] = LrDecay, ["weight_decay"] = WeightDecay,
        ["initial_accumulator_value"] = InitialAccumulatorValue, ["eps"] = Eps, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Adagrad as torch.optim.Adagrad: g ← ±∇ + wd·p; S ← S + g² (S starts at
/// initial_accumulator_value); p ← p - lr/(1 + (t-1)·lr_decay) · g / (√S + ε).
/// </summary>
public sealed class Adagrad : Optimizer
{
    /// <summary>Adagrad over <paramref name="parameters"/>.</summary>
    public Adagrad(IEnumerable<Tensor> parameters, AdagradOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>Adagrad over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public Adagrad(IEnumerable<ParamGroup> groups, AdagradOptions? options = null) : base(groups, (options ?? new AdagradOptions()).ToDictionary())
    {
    }

    /// <inheritdoc/>
    public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(param);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        if (!state.Has("sum"))
        {
            state["sum"] = Tensor.ZerosLike(param) + hyper["initial_accumulator_value"];
        }
        long t = ++state.Step;
        var g = DirectedGradient(param, grad, hyper);
        var clr = hyper["lr"] / (1 + (t - 1) * hyper["lr_decay"]);
        var sum = state["sum"] + g * g;
        state["sum"] = sum;
        var std = sum.SafeSqrt() + hyper["eps"];
        return param - clr * g / std;
    }
}
