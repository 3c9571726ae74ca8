namespace Higher.Optim;

/// <summary>Options of <see cref="Adam"/> and <see cref="AdamW"/> (PyTorch's defaults; AdamW's weight decay defaults to 0.01).</summary>
public sealed record AdamOptions
{
    /// <summary>Learning rate.</summary>
    public double Lr { get; init; } = 1e-3;
    /// <summary>Decay rates of the first and second moment estimates.</summary>
    public (double Beta1, double Beta2) Betas { get; init; } = (0.9, 0.999);
    /// <summary>Term added to the denominator.</summary>
    public double Eps { get; init; } = 1e-8;
    /// <summary>L2 penalty (Adam) or decoupled decay (AdamW); null takes the optimizer's default.</summary>
    public double? WeightDecay { get; init; }
    /// <summary>Use the maximum of past second moments (AMSGrad).</summary>
    public bool Amsgrad { get; init; }
    /// <summary>Maximize the objective.</summary>
    public bool Maximize { get; init; }

    /// <summary>The options as named hyperparameters.</summary>
    public Dictionary<string, double> ToDictionary(double defaultWeightDecay) => new()
    {
        ["lr"] = Lr, ["beta1"] = Betas.Beta1, ["beta2"] = Betas.Beta2, ["eps"] = Eps,
        ["weight_decay"] = WeightDecay ?? defaultWeightDecay, ["amsgrad"] = Amsgrad ? 1 : 0, ["maximize"] = Maximize ? 1 : 0,
    };
}

/// <summary>
/// Adam as torch.optim.Adam: g ← ±∇ + wd·p; m ← β1·m + (1-β1)·g; v ← β2·v + (1-β2)·g²
/// (AMSGrad: v̂ ← max(v̂, v)); p ← p - lr/(1-β1^t) · m / (√v/√(1-β2^t) + ε).
/// The square root is <see cref="Tensor.SafeSqrt"/>, so meta-gradients stay finite where v = 0.
/// </summary>
public class Adam : Optimizer
{
    /// <summary>Adam over <paramref name="parameters"/>.</summary>
    public Adam(IEnumerable<Tensor> parameters, AdamOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>Adam over parameter groups; <paramref name="options"/> are the defaults.</summary>
    public Adam(IEnumerable<ParamGroup> groups, AdamOptions? options = null) : this(groups, (options ?? new AdamOptions()).ToDictionary(0))
    {
    }

    /// <summary>For subclasses with other defaults.</summary>
    protected Adam(IEnumerable<ParamGroup> groups, IReadOnlyDictionary<string, double> defaults) : base(groups, defaults)
    {
    }

    /// <summary>True for decoupled weight decay (AdamW).</summary>
    protected virtual bool DecoupledWeightDecay => false;

    /// <inheritdoc/>
    public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        var g = hyper.Flag("maximize") ? grad.Neg() : grad;
        var lr = hyper["lr"];
        var wd = hyper["weight_decay"];
        bool decay = wd.IsTensor || wd.Value != 0;
        if (DecoupledWeightDecay && decay)
        {
            param = param * (1 - lr * wd);
        }
        else if (decay)
        {
            g = g + wd * param;
        }
        if (!state.Has("exp_avg"))
        {
            state["exp_avg"] = Tensor.ZerosLike(param);
            state["exp_avg_sq"] = Tensor.ZerosLike(param);
            if (hyper.Flag("amsgrad"))
            {
                state["max_exp_avg_sq"] = Tensor.ZerosLike(param);
            }
        }
        long t = ++state.Step;
        var b1 = hyper["beta1"];
        var b2 = hyper["beta2"];
        var m = b1 * state["exp_avg"] + (1 - b1) * g;
        var v = b2 * state["exp_avg_sq"] + (1 - b2) * g * g;
        state["exp_avg"] = m;
        state["exp_avg_sq"] = v;
        if (hyper.Flag("amsgrad"))
        {
            v = Tensor.Maximum(state["max_exp_avg_sq"], v);
            state["max_exp_avg_sq"] = v;
        }
        var stepSize = lr / (1 - b1.Pow(t));
        var denom = v.SafeSqrt() / (1 - b2.Pow(t)).Sqrt() + hyper["eps"];
        return param - stepSize * m / denom;
    }

    /// <summary>
    /// The update as one <see cref="IBackend.AdamUpdate"/> kernel (the same bits as <see cref="Update"/>)
    /// for Adam and AdamW themselves; a subclass of Adam, which may override <see cref="Update"/>,
    /// gets the composed rule.
    /// </summary>
    internal override Tensor? FusedUpdate(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(hyper);
        if (GetType() != typeof(Adam) && GetType() != typeof(AdamW))
        {
            return null;
        }
        HyperValue lr = hyper["lr"], wd = hyper["weight_decay"], b1 = hyper["beta1"], b2 = hyper["beta2"], eps = hyper["eps"];
        bool amsgrad = hyper.Flag("amsgrad");
        if (lr.IsTensor || wd.IsTensor || b1.IsTensor || b2.IsTensor || eps.IsTensor || !param.DType.IsFloatingPoint()
            || grad.DType != param.DType || grad.Device != param.Device || grad.Shape != param.Shape)
        {
            return null;
        }
        if (state.Has("exp_avg") && !Fits(state["exp_avg"], param) || state.Has("exp_avg_sq") && !Fits(state["exp_avg_sq"], param)
            || amsgrad && state.Has("max_exp_avg_sq") && !Fits(state["max_exp_avg_sq"], param))
        {
            return null;
        }
        if (!state.Has("exp_avg"))
        {
            state["exp_avg"] = Tensor.ZerosLike(param);
            state["exp_avg_sq"] = Tensor.ZerosLike(param);
            if (amsgrad)
            {
                state["max_exp_avg_sq"] = Tensor.ZerosLike(param);
            }
        }
        else if (amsgrad && !state.Has("max_exp_avg_sq"))
        {
            return null;
        }
        long t = ++state.Step;
        var scalars = new AdamScalars(lr.Value, b1.Value, b2.Value, eps.Value, wd.Value, DecoupledWeightDecay, amsgrad, hyper.Flag("maximize"), t);
        var m = state["exp_avg"];
        var v = state["exp_avg_sq"];
        var vmax = amsgrad ? state["max_exp_avg_sq"] : null;
        var mOut = Tensor.Empty(param.Backend, param.DType, param.Shape);
        var vOut = Tensor.Empty(param.Backend, param.DType, param.Shape);
        var vmaxOut = amsgrad ? Tensor.Empty(param.Backend, param.DType, param.Shape) : null;
        var pOut = Tensor.Empty(param.Backend, param.DType, param.Shape);
        param.Backend.AdamUpdate(scalars, param.Storage, grad.Storage, m.Storage, v.Storage, vmax?.Storage,
            pOut.Storage, mOut.Storage, vOut.Storage, vmaxOut?.Storage);
        state["exp_avg"] = mOut;
        state["exp_avg_sq"] = vOut;
        if (vmaxOut is not null)
        {
            state["max_exp_avg_sq"] = vmaxOut;
        }
        return pOut;
    }

    private static bool Fits(Tensor t, Tensor param) => t.Shape == param.Shape && t.DType == param.DType && t.Device == param.Device;
}

/// <summary>AdamW as torch.optim.AdamW: p ← p·(1 - lr·wd) first, then Adam without the L2 term.</summary>
public sealed class AdamW : Adam
{
    /// <summary>AdamW over <paramref name="parameters"/>.</summary>
    public AdamW(IEnumerable<Tensor> parameters, AdamOptions? options = null) : this(OneGroup(parameters), options)
    {
    }

    /// <summary>AdamW over parameter groups.</summary>
    public AdamW(IEnumerable<ParamGroup> groups, AdamOptions? options = null) : base(groups, (options ?? new AdamOptions()).ToDictionary(0.01))
    {
    }

    /// <inheritdoc/>
    protected override bool DecoupledWeightDecay => true;
}
