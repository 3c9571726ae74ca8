namespace Higher.Optim;

/// <summary>Options of <see cref="Asgd"/> (PyTorch's defaults).</summary>
public sealed record AsgdOptions
{
    /// <summary>Learning rate.</summary>
    public double Lr { get; init; } = 1e-2;
    /// <summary>Decay term λ.</summary>
    public double Lambd { get; init; } = 1e-4;
    /// <summary>Power α of the learning-rate decay.</summary>
    public double Alpha { get; init; } = 0.75;
    /// <summary>Step at which averaging starts.</summary>
    public double T0 { get; init; } = 1e6;
    /// <summary>L2 penalty added to the gradient.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Maximize the objective instead of minimizing it.</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary() => new()
    {
        ["lr"] = Lr, ["lambd"] = Lambd, ["alpha"] = Alpha, ["t0"] = T0,
        ["weight_decay"] = WeightDecay, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Averaged SGD as torch.optim.ASGD, with per-parameter state η (starts at lr), μ (starts at 1)
/// and the average ax: g ← ±∇ + wd·p; p ← p·(1 - λ·η) - η·g; ax ← p if μ = 1, else
/// ax + μ·(p - ax) (the new p, as torch does); then η ← lr/(1 + λ·lr·t)^α and μ ← 1/max(1, t - t0).
/// η and μ are 0-d tensors, so a tensor learning rate reaches later steps through them.
/// </summary>
public sealed class Asgd : Optimizer
{
    /// <summary>ASGD over <paramref name="parameters"/>.</summary>
    public Asgd(IEnumerable<Tensor> parameters, AsgdOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>ASGD over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public Asgd(IEnumerable<ParamGroup> groups, AsgdOptions? options = null) : base(groups, (options ?? new AsgdOptions()).ToDictionary())
    {
    }

    /// <inheritdoc/>
    public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(param);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        var lr = hyper["lr"];
        if (!state.Has("eta"))
        {
            state["eta"] = lr.AsTensor(param);
            state["mu"] = param.ScalarLike(1);
            state["ax"] = Tensor.ZerosLike(param);
        }
        long t = ++state.Step;
        var g = DirectedGradient(param, grad, hyper);
        var lambd = hyper["lambd"];
        HyperValue eta = state["eta"];
        var p = param * (1 - lambd * eta);
        p = p - eta * g;
        var mu = state["mu"];
        state["ax"] = mu.Item() != 1 ? state["ax"] + (p - state["ax"]) * mu : p;
        state["eta"] = (lr / (1 + lambd * lr * t).Pow(hyper["alpha"])).AsTensor(param);
        var t0 = hyper["t0"];
        state["mu"] = t - t0.Value > 1 ? (1 / (t - t0)).AsTensor(param) : param.ScalarLike(1);
        return p;
    }
}
