using Higher.Nn;
using Higher.Optim;

namespace Higher.Functional;

/// <summary>Builds the differentiable counterpart of an optimizer.</summary>
public delegate DifferentiableOptimizer DifferentiableOptimizerFactory(Optimizer other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions options);

/// <summary>
/// higher.optim's functions: the registry of optimizer types and their differentiable
/// counterparts, and the trainable-hyperparameter helpers.
/// </summary>
public static class DiffOptim
{
    private static readonly Dictionary<Type, DifferentiableOptimizerFactory> Registry = [];
    private static readonly Lock Gate = new();

    private static readonly HashSet<string> Flags = ["nesterov", "amsgrad", "maximize", "centered", "foreach", "capturable", "differentiable"];

    static DiffOptim()
    {
        Register<Sgd>((o, r, opt) => new DifferentiableSgd((Sgd)o, r, opt));
        Register<Adam>((o, r, opt) => new DifferentiableAdam((Adam)o, r, opt));
        Register<AdamW>((o, r, opt) => new DifferentiableAdamW((AdamW)o, r, opt));
        Register<Adagrad>((o, r, opt) => new DifferentiableAdagrad((Adagrad)o, r, opt));
        Register<Adadelta>((o, r, opt) => new DifferentiableAdadelta((Adadelta)o, r, opt));
        Register<Adamax>((o, r, opt) => new DifferentiableAdamax((Adamax)o, r, opt));
        Register<Asgd>((o, r, opt) => new DifferentiableAsgd((Asgd)o, r, opt));
        Register<RmsProp>((o, r, opt) => new DifferentiableRmsProp((RmsProp)o, r, opt));
        Register<Rprop>((o, r, opt) => new DifferentiableRprop((Rprop)o, r, opt));
        Register<NAdam>((o, r, opt) => new DifferentiableNAdam((NAdam)o, r, opt));
        Register<RAdam>((o, r, opt) => new DifferentiableRAdam((RAdam)o, r, opt));
    }

    /// <summary>
    /// Registers <paramref name="factory"/> as the differentiable counterpart of <typeparamref name="TOptimizer"/>
    /// and of its subclasses that have no registration of their own (higher's register_optim).
    /// </summary>
    public static void Register<TOptimizer>(DifferentiableOptimizerFactory factory) where TOptimizer : Optimizer =>
        Register(typeof(TOptimizer), factory);

    /// <summary>Registers a factory for an optimizer type.</summary>
    public static void Register(Type optimizerType, DifferentiableOptimizerFactory factory)
    {
        ArgumentNullException.ThrowIfNull(optimizerType);
        ArgumentNullException.ThrowIfNull(factory);
        if (!typeof(Optimizer).IsAssignableFrom(optimizerType))
        {
            throw new ArgumentException($"{optimizerType.Name} is not an Optimizer.", nameof(optimizerType));
        }
        lock (Gate)
        {
            Registry[optimizerType] = factory;
        }
    }

    /// <summary>True if <paramref name="optimizerType"/> or a base type of it is registered.</summary>
    public static bool IsRegistered(Type optimizerType) => TryResolve(optimizerType, out _);

    private static bool TryResolve(Type type, out DifferentiableOptimizerFactory factory)
    {
        lock (Gate)
        {
            for (var t = type; t is not null && t != typeof(object); t = t.BaseType)
            {
                if (Registry.TryGetValue(t, out factory!))
                {
                    return true;
                }
            }
        }
        factory = null!;
        return false;
    }

    /// <summary>
    /// The differentiable version of an existing optimizer (higher's get_diff_optim): hyperparameters
    /// and detached state are copied from <paramref name="opt"/>, which optimizes <paramref name="referenceParams"/>.
    /// </summary>
    public static DifferentiableOptimizer Get(Optimizer opt, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(opt);
        if (!TryResolve(opt.GetType(), out var factory))
        {
            throw new NotSupportedException(
                $"No differentiable optimizer is registered for {opt.GetType().Name}. Register one with DiffOptim.Register<{opt.GetType().Name}>((opt, refs, options) => new DifferentiableOptimizer(opt, refs, options)) — the base class applies the optimizer's own Update rule on the tape.");
        }
        return factory(opt, referenceParams, options ?? new DifferentiableOptimizerOptions());
    }

    /// <summary>
    /// A differentiable optimizer for a new optimizer (higher's create_diff_optim): <paramref name="construct"/>
    /// builds the optimizer over detached stand-ins of the fast weights (given as groups, so per-group
    /// hyperparameters work), and the result updates the fast weights themselves.
    /// </summary>
    public static DifferentiableOptimizer Create(Func<IEnumerable<ParamGroup>, Optimizer> construct, IEnumerable<ParamGroup>? groups = null, DifferentiableOptimizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(construct);
        options ??= new DifferentiableOptimizerOptions();
        var source = groups?.ToList()
            ?? (options.FModel is { } f ? [new ParamGroup(f.FastParams)] : throw new ArgumentException("Create needs parameter groups or a functional module (FModel).", nameof(groups)));
        var standIns = new List<Tensor>();
        var standInGroups = new List<ParamGroup>();
        var standInOf = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var g in source)
        {
            var leaves = g.Params.Select(p => p.Detach().WithRequiresGrad(p.RequiresGrad)).ToList();
            for (int i = 0; i < leaves.Count; i++)
            {
                standInOf[g.Params[i]] = leaves[i];
            }
            standIns.AddRange(leaves);
            standInGroups.Add(new ParamGroup(leaves, g.Options));
        }
        var opt = construct(standInGroups);
        IReadOnlyList<Tensor> reference = standIns;
        if (options.FModel is { } fmodel && standInOf.Count == standIns.Count
            && standInOf.Keys.All(p => fmodel.FastParams.Contains(p, ReferenceEqualityComparer.Instance)))
        {
            // The groups name the module's own fast weights: line the stand-ins up with them, so each
            // group's hyperparameters reach its own weights whatever the order of the groups (and fast
            // weights in no group pass through).
            reference = fmodel.FastParams.Select(p => standInOf.TryGetValue(p, out var s) ? s : p.Detach()).ToList();
        }
        return Get(opt, reference, options);
    }

    /// <summary>
    /// Every numeric hyperparameter of every group as a tensor that requires grad, in the override
    /// format (one value per group) — higher's get_trainable_opt_params. Flags are left out.
    /// </summary>
    public static Override GetTrainableOptParams(Optimizer opt, Device? device = null, DType dtype = DType.Float64)
    {
        ArgumentNullException.ThrowIfNull(opt);
        var result = new Override();
        var names = opt.ParamGroups.SelectMany(g => g.Options.Keys).Distinct().Where(k => !Flags.Contains(k)).ToList();
        foreach (var name in names)
        {
            var values = new HyperValue[opt.ParamGroups.Count];
            for (int i = 0; i < values.Length; i++)
            {
                if (!opt.ParamGroups[i].Options.TryGetValue(name, out var v))
                {
                    throw new InvalidOperationException($"Parameter group {i} lacks hyperparameter '{name}' that other groups have.");
                }
                values[i] = Tensor.Scalar(v, dtype, device).WithRequiresGrad();
            }
            result.Set(name, values);
        }
        return result;
    }

    /// <summary>Writes override values back into the optimizer's groups (higher's apply_trainable_opt_params).</summary>
    public static void ApplyTrainableOptParams(Optimizer opt, Override @override)
    {
        ArgumentNullException.ThrowIfNull(opt);
        ArgumentNullException.ThrowIfNull(@override);
        @override.Validate(opt.HyperParameterGroups);
        // Every group's new numbers are computed and validated before the first is written.
        var next = opt.ParamGroups.Select(g => new Dictionary<string, double>(g.Options)).ToList();
        foreach (var name in @override.Keys)
        {
            for (int i = 0; i < next.Count; i++)
            {
                @override.TryGet(name, i, out var v);
                next[i][name] = v.Value;
            }
        }
        for (int i = 0; i < next.Count; i++)
        {
            opt.CheckHyperParameters(next[i], "ApplyTrainableOptParams", i);
        }
        for (int i = 0; i < next.Count; i++)
        {
            foreach (var (k, v) in next[i])
            {
                opt.ParamGroups[i][k] = v;
            }
        }
    }
}
