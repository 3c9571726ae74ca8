namespace Higher.Optim;

/// <summary>Options of <see cref="Rprop"/> (PyTorch's defaults).</summary>
public sealed record RpropOptions
{
    /// <summary>Initial step size.</summary>
    public double Lr { get; init; } = 1e-2;
    /// <summary>Multiplicative decrease and increase factors, 0 &lt; eta_minus &lt; 1 &lt; eta_plus.</summary>
    public (double EtaMinus, double EtaPlus) Etas { get; init; } = (0.5, 1.2);
    /// <summary>Minimal and maximal step sizes.</summary>
    public (double Min, double Max) StepSizes { get; init; } = (1e-6, 50);
    /// <summary>Maximize the objective instead of minimizing it.</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["eta_minus"] = Etas.EtaMinus, ["eta_plus"] = Etas.EtaPlus,
        ["step_size_min"] = StepSizes.Min, ["step_size_max"] = StepSizes.Max, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Resilient backpropagation as torch.optim.Rprop: with s = sign(g·g_prev), each step size is
/// multiplied by eta_plus where s &gt; 0, eta_minus where s &lt; 0 (and the gradient is then taken
/// as 0 there), 1 elsewhere, and clamped to [step_size_min, step_size_max];
/// p ← p - sign(g)·step; g_prev ← g. Step sizes start at lr.
/// </summary>
public sealed class Rprop : Optimizer
{
    /// <summary>Rprop over <paramref name="parameters"/>.</summary>
    public Rprop(IEnumerable<Tensor> parameters, RpropOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>Rprop over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public Rprop(IEnumerable<ParamGroup> groups, RpropOptions? options = null) : base(groups, (options ?? new RpropOptions()).ToDictionary())
    {
    }

    /// <inheritdoc/>
    protected override void Validate(ParamGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        base.Validate(group);
        double minus = group["eta_minus"], plus = group["eta_plus"];
        if (!(0 < minus && minus < 1 && 1 < plus))
        {
            throw new ArgumentException($"Invalid etas for {GetType().Name}: eta_minus {minus} and eta_plus {plus} (need 0 < eta_minus < 1 < eta_plus).");
        }
        double min = group["step_size_min"], max = group["step_size_max"];
        if (!(min >= 0 && min <= max))
        {
            throw new ArgumentException($"Invalid step sizes for {GetType().Name}: step_size_min {min} and step_size_max {max} (need 0 ≤ step_size_min ≤ step_size_max).");
        }
    }

    /// <inheritdoc/>
    public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(param);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        if (!state.Has("prev"))
        {
            state["prev"] = Tensor.ZerosLike(param);
            state["step_size"] = Tensor.ZerosLike(param) + hyper["lr"];
        }
        state.Step++;
        var g = hyper.Flag("maximize") ? grad.Neg() : grad;
        var product = g * state["prev"];
        var increase = product > 0;
        var decrease = product < 0;
        var etaPlus = hyper["eta_plus"].AsTensor(param);
        var etaMinus = hyper["eta_minus"].AsTensor(param);
        var factor = Tensor.Where(increase, etaPlus, Tensor.Where(decrease, etaMinus, param.ScalarLike(1)));
        var stepSize = Clamp(state["step_size"] * factor, hyper["step_size_min"], hyper["step_size_max"]);
        g = Tensor.Where(decrease, 0, g);
        state["step_size"] = stepSize;
        state["prev"] = g;
        return param - g.Sign() * stepSize;
    }

    /// <summary>clamp(x, min, max); tensor bounds receive the gradient where they bind.</summary>
    private static Tensor Clamp(Tensor x, HyperValue min, HyperValue max)
    {
        if (!min.IsTensor && !max.IsTensor)
        {
            return x.Clamp(min.Value, max.Value);
        }
        var low = min.AsTensor(x);
        var high = max.AsTensor(x);
        return Tensor.Where(x < low, low, Tensor.Where(x > high, high, x));
    }
}
