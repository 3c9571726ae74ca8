using Higher.Nn;
using Higher.Optim;

namespace Higher.Functional;

/// <summary>
/// The inner-loop context (higher's innerloop_ctx): a functional view of the model and a
/// differentiable version of the optimizer. Deconstructs into both:
/// <code>using var ctx = InnerLoop.Create(model, opt); var (fmodel, diffopt) = ctx;</code>
/// Disposing frees the fast-weight history and retires both: later forwards, steps and updates
/// through them throw <see cref="ObjectDisposedException"/> (their history can still be read).
/// With <c>releaseOnDispose: true</c> it is also a <see cref="TensorScope"/> (<see cref="Scope"/>): disposing it frees the fast-weight
/// history and releases the storage of every tensor created since <see cref="InnerLoop.Create"/> on its
/// flow that did not escape. Survivors: the model's parameters, their Grad (the meta-gradient the query
/// loss's Backward fills), its buffers and the optimizer's state; and the context's results: the
/// time-0 and the latest fast weights (with their Grad), the functional buffers and the differentiable
/// optimizer's state. The intermediate fast weights, activations, losses and gradients are released;
/// keep anything else you need afterwards (a query loss) with <see cref="Keep"/>, or read it (Item) inside.
/// </summary>
public sealed class InnerLoopContext : IDisposable
{
    internal InnerLoopContext(FunctionalModule fmodel, DifferentiableOptimizer diffopt, TensorScope? scope)
    {
        FModel = fmodel;
        DiffOpt = diffopt;
        Scope = scope;
    }

    /// <summary>
    /// The scope of the context's tensors, released at <see cref="Dispose"/>, when the context was
    /// created with <c>releaseOnDispose: true</c>; null otherwise.
    /// </summary>
    public TensorScope? Scope { get; }

    /// <summary>Keeps <paramref name="tensor"/> (its values and Grad) beyond the context; see <see cref="TensorScope.Keep(Tensor)"/>. Without a scope it returns the tensor unchanged.</summary>
    public Tensor Keep(Tensor tensor) => Scope is null ? tensor : Scope.Keep(tensor);

    /// <summary>The functional model.</summary>
    public FunctionalModule FModel { get; }

    /// <summary>The differentiable optimizer, bound to <see cref="FModel"/>.</summary>
    public DifferentiableOptimizer DiffOpt { get; }

    /// <summary>Deconstructs into (fmodel, diffopt).</summary>
    public void Deconstruct(out FunctionalModule fmodel, out DifferentiableOptimizer diffopt)
    {
        fmodel = FModel;
        diffopt = DiffOpt;
    }

    /// <summary>Drops the intermediate fast weights (and the graphs they hold), releases the context's scope and retires the context. Idempotent.</summary>
    public void Dispose()
    {
        if (FModel.IsDisposed)
        {
            return;
        }
        if (Scope is null)
        {
            FModel.ClearHistory();
            FModel.MarkDisposed("inner-loop context");
            DiffOpt.MarkDisposed("inner-loop context");
            return;
        }
        Scope.Keep(FModel.InitFastParams);
        Scope.Keep(FModel.FastParams);
        foreach (var (_, value) in FModel.Buffers())
        {
            if (value is not null)
            {
                Scope.Keep(value);
            }
        }
        for (int i = 0; i < FModel.FastParams.Count; i++)
        {
            if (DiffOpt.StateOf(i) is { } state)
            {
                Scope.Keep(state.Tensors.Values);
            }
        }
        FModel.ClearHistory();
        FModel.MarkDisposed("inner-loop context");
        DiffOpt.MarkDisposed("inner-loop context");
        Scope.Dispose();
    }
}

/// <summary>Entry point of the inner-loop API.</summary>
public static partial class InnerLoop
{
    /// <summary>
    /// A functional model (see <see cref="Patch.Monkeypatch"/>) and a differentiable version of
    /// <paramref name="opt"/> over it.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="opt">An optimizer over (a subset of) the model's parameters, of a registered type.</param>
    /// <param name="device">Device to cast fast weights and state to.</param>
    /// <param name="copyInitialWeights">True: time-0 weights are detached copies. False: they are the model's parameters (MAML: the outer backward fills model grads).</param>
    /// <param name="override">Hyperparameter overrides, possibly tensors that require grad.</param>
    /// <param name="trackHigherGrads">False for test time: no graph is kept across steps.</param>
    /// <param name="firstOrder">First-order MAML: gradients without graphs, updates recorded.</param>
    /// <param name="truncateEvery">Cut the graph every this many steps.</param>
    /// <param name="releaseOnDispose">
    /// Make the context a <see cref="TensorScope"/>: every tensor created on this flow from now until
    /// Dispose that did not escape is released then (see the class summary). Off by default, because a
    /// scope follows the flow, not the context: two contexts open at once on one flow (a twin, tasks
    /// interleaved step by step) would release each other's tensors. Use it for one context at a time,
    /// or wrap each meta-iteration in <see cref="Tensor.NewScope"/>.
    /// </param>
    public static InnerLoopContext Create(Module model, Optimizer opt, Device? device = null, bool copyInitialWeights = true,
        Override? @override = null, bool trackHigherGrads = true, bool firstOrder = false, int? truncateEvery = null, bool releaseOnDispose = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(opt);
        var options = Options("InnerLoop.Create", device, @override, trackHigherGrads, firstOrder, truncateEvery);
        CheckUpdatesModel(model, opt, "InnerLoop.Create");
        return Open(model, opt, releaseOnDispose ? "the inner-loop context" : null, () => Patch.Monkeypatch(model, device, copyInitialWeights, trackHigherGrads), options);
    }

    /// <summary>The differentiable optimizer's options of a context that <paramref name="call"/> opens; refuses a truncateEvery below 1.</summary>
    internal static DifferentiableOptimizerOptions Options(string call, Device? device, Override? @override, bool trackHigherGrads, bool firstOrder,
        int? truncateEvery, int tasks = 0)
    {
        if (truncateEvery is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(truncateEvery), truncateEvery, $"{call}: truncateEvery must be at least 1 (or null for never); got {truncateEvery}.");
        }
        return new DifferentiableOptimizerOptions
        {
            Device = device,
            Override = @override,
            TrackHigherGrads = trackHigherGrads,
            FirstOrder = firstOrder,
            TruncateEvery = truncateEvery,
            Tasks = tasks,
        };
    }

    /// <summary>Refuses an optimizer none of whose parameters is the model's: every fast weight would pass through unchanged, step after step, without a word.</summary>
    internal static void CheckUpdatesModel(Module model, Optimizer opt, string call)
    {
        var modelParams = model.Parameters();
        foreach (var group in opt.ParamGroups)
        {
            foreach (var p in group.Params)
            {
                // Usually the first parameter is the model's: a scan, not a set, for the common case.
                foreach (var q in modelParams)
                {
                    if (ReferenceEquals(p, q))
                    {
                        return;
                    }
                }
            }
        }
        throw new ArgumentException(
            $"{call}: none of the {opt.ParamGroups.Sum(g => g.Params.Count)} parameters of the {opt.GetType().Name} is a parameter of the {model.GetType().Name} ({modelParams.Count} parameters), so the inner loop would update nothing. " +
            "Build the optimizer over model.Parameters() (after any model.To(...), which replaces the parameter tensors).", nameof(opt));
    }

    /// <summary>
    /// The context over the functional model <paramref name="makeFModel"/> builds and a differentiable
    /// optimizer with <paramref name="options"/>; inside a scope named <paramref name="scopeName"/> when given
    /// (released again if building fails).
    /// </summary>
    internal static InnerLoopContext Open(Module model, Optimizer opt, string? scopeName, Func<FunctionalModule> makeFModel, DifferentiableOptimizerOptions options)
    {
        var scope = scopeName is null ? null : TensorScope.Begin(scopeName);
        try
        {
            scope?.Keep(model);
            scope?.Keep(opt);
            var fmodel = makeFModel();
            var diffopt = DiffOptim.Get(opt, model.Parameters(), options with { FModel = fmodel });
            return new InnerLoopContext(fmodel, diffopt, scope);
        }
        catch
        {
            scope?.Dispose();
            throw;
        }
    }
}
