using Higher.Optim;

namespace Higher.Functional;

/// <summary>Transforms the gradients before an update (higher's grad_callback); entries may be null (unused parameters).</summary>
public delegate IReadOnlyList<Tensor?> GradCallback(IReadOnlyList<Tensor?> grads);

/// <summary>Construction options shared by every differentiable optimizer.</summary>
public sealed record DifferentiableOptimizerOptions
{
    /// <summary>The functional module whose fast weights <c>Step</c> reads and updates.</summary>
    public FunctionalModule? FModel { get; init; }

    /// <summary>Device to cast the optimizer state to.</summary>
    public Device? Device { get; init; }

    /// <summary>Hyperparameter overrides (tensors may require grad).</summary>
    public Override? Override { get; init; }

    /// <summary>Keep the graph of every update (false: test-time mode, new weights are detached leaves).</summary>
    public bool TrackHigherGrads { get; init; } = true;

    /// <summary>
    /// First-order mode (FOMAML): gradients are taken without a graph, but the update itself is
    /// recorded, so the outer gradient reaches the initial weights through the identity path. Works
    /// with copyInitialWeights false.
    /// </summary>
    public bool FirstOrder { get; init; }

    /// <summary>Default gradient transform for every step.</summary>
    public GradCallback? GradCallback { get; init; }

    /// <summary>
    /// Cut the graph of fast weights and state every this many steps (truncated backpropagation); null:
    /// never; at least 1. This is what bounds the memory of a long tracked unroll (bench/RESULTS.md).
    /// </summary>
    public int? TruncateEvery { get; init; }

    /// <summary>
    /// The number of tasks T of a task-batched optimizer (<see cref="InnerLoop.CreateBatched"/>), or 0 for a
    /// plain one: the fast weights are [T, ...], the state is per task, overrides may hold per-task
    /// values (<see cref="Override.SetPerTask"/>), and a loss [T] is summed, so each task's weights
    /// receive exactly their own task's gradient. Must equal the functional module's task count.
    /// </summary>
    public int Tasks { get; init; }
}

/// <summary>
/// A differentiable optimizer: each <see cref="Step(Tensor, IReadOnlyList{Tensor}?, Override?, GradCallback?)"/>
/// takes the gradient of the loss with respect to the fast weights (with a graph when tracking), applies
/// the wrapped optimizer's update rule as tensor ops, and returns the new fast weights, which carry the
/// graph back to the initial weights, the state and any tensor hyperparameters.
/// Hyperparameters and state are copied from the existing optimizer (state detached) at construction.
/// </summary>
public partial class DifferentiableOptimizer : IHyperParameterGroups
{
    private readonly Optimizer _rule;
    private readonly List<Dictionary<string, double>> _groups;
    private readonly int[] _groupOf;
    private readonly ParamState?[] _state;
    private readonly Override _override = new();
    private readonly DifferentiableOptimizerOptions _options;
    private readonly Tensor[] _reference;
    private readonly int _tasks;
    private long _steps;
    private string? _disposedBy;

    /// <summary>
    /// Wraps <paramref name="other"/>, which optimizes (a subset of) <paramref name="referenceParams"/>:
    /// the parameters of the model, in the order of the fast weights.
    /// </summary>
    public DifferentiableOptimizer(Optimizer other, IEnumerable<Tensor> referenceParams, DifferentiableOptimizerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(other);
        ArgumentNullException.ThrowIfNull(referenceParams);
        _rule = other;
        _options = options ?? new DifferentiableOptimizerOptions();
        var reference = referenceParams.ToArray();
        if (_options.TruncateEvery is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _options.TruncateEvery, $"{GetType().Name}: TruncateEvery must be at least 1 (or null for never); got {_options.TruncateEvery}.");
        }
        for (int i = 0; i < reference.Length; i++)
        {
            ArgumentNullException.ThrowIfNull(reference[i], $"{nameof(referenceParams)}[{i}]");
        }
        _reference = reference;
        _tasks = TaskBatching.CheckOptions(_options, GetType().Name);
        _groups = other.ParamGroups.Select(g => new Dictionary<string, double>(g.Options)).ToList();
        _groupOf = new int[reference.Length];
        _state = new ParamState?[reference.Length];
        for (int i = 0; i < reference.Length; i++)
        {
            _groupOf[i] = -1;
            for (int gi = 0; gi < other.ParamGroups.Count; gi++)
            {
                // A loop, not Any with a lambda: this runs per parameter of every inner-loop context.
                if (ContainsReference(other.ParamGroups[gi].Params, reference[i]))
                {
                    _groupOf[i] = gi;
                    break;
                }
            }
            if (_groupOf[i] >= 0 && other.State.TryGetValue(reference[i], out var s))
            {
                _state[i] = TaskBatching.BroadcastState(s.DetachedCopy(_options.Device), reference[i].Shape, _tasks);
            }
        }
        if (reference.Length > 0 && Array.TrueForAll(_groupOf, g => g < 0))
        {
            throw new ArgumentException(
                $"{GetType().Name}: none of the {reference.Length} reference parameters is optimized by the {other.GetType().Name} ({other.ParamGroups.Sum(g => g.Params.Count)} parameters of its own), so every step would update nothing. " +
                "Build the optimizer over the model's parameters (after any model.To(...), which replaces the parameter tensors).", nameof(referenceParams));
        }
        if (_options.Override is { } o)
        {
            o.Validate(_groups);
            o.ValidateTasks(_tasks, GetType().Name);
            _override.Merge(o);
        }
    }

    private static bool ContainsReference(List<Tensor> list, Tensor t)
    {
        foreach (var p in list)
        {
            if (ReferenceEquals(p, t))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Retires the optimizer (its inner-loop context was disposed): later steps throw.</summary>
    internal void MarkDisposed(string by) => _disposedBy ??= by;

    /// <summary>The wrapped optimizer whose update rule this one applies.</summary>
    public Optimizer Rule => _rule;

    /// <summary>The functional module updated by <c>Step</c>, if any.</summary>
    public FunctionalModule? FModel => _options.FModel;

    /// <summary>Whether updates keep their graphs.</summary>
    public bool TrackHigherGrads => _options.TrackHigherGrads;

    /// <summary>Steps taken.</summary>
    public long StepCount => _steps;

    /// <summary>
    /// Each group's numeric hyperparameters, writable (for instance by a learning-rate schedule
    /// inside the inner loop: any <see cref="Optim.Schedulers.LRScheduler"/> can drive this
    /// optimizer). Overrides take precedence over these numbers.
    /// </summary>
    public IReadOnlyList<Dictionary<string, double>> ParamGroups => _groups;

    /// <inheritdoc/>
    public IReadOnlyList<IDictionary<string, double>> HyperParameterGroups => _groups;

    /// <summary>The overrides in force (construction and later steps merged).</summary>
    public Override Override => _override;

    /// <summary>The state of fast weight <paramref name="index"/> (null before its first update or when it is in no group).</summary>
    public ParamState? StateOf(int index) => _state[index];

    /// <summary>
    /// One update. <paramref name="parameters"/> default to the functional module's latest fast weights;
    /// given, they are used instead (and, with a functional module, become its new weights).
    /// <paramref name="override"/> entries persist for later steps. Returns the new fast weights.
    /// </summary>
    /// <remarks>
    /// Everything is checked before anything changes: the parameters (count, shape, dtype, device),
    /// the override, that the loss has a graph to differentiate, and the gradients the callback
    /// returns. The update runs on copies of the state; a step that throws leaves the state, the
    /// overrides, the step count and the fast weights exactly as they were.
    /// </remarks>
    public IReadOnlyList<Tensor> Step(Tensor loss, IReadOnlyList<Tensor>? parameters = null, Override? @override = null, GradCallback? gradCallback = null)
    {
        if (_disposedBy is not null)
        {
            throw new ObjectDisposedException(GetType().Name, $"{GetType().Name}.Step: this optimizer belongs to an {_disposedBy} that was disposed; create a new context.");
        }
        ArgumentNullException.ThrowIfNull(loss);
        var fmodel = _options.FModel;
        var current = parameters ?? fmodel?.FastParams
            ?? throw new InvalidOperationException("Step needs the fast weights: pass parameters, or build the optimizer with a functional module (FModel).");
        CheckParameters(current);
        for (int gi = 0; gi < _groups.Count; gi++)
        {
            _rule.CheckHyperParameters(_groups[gi], $"{GetType().Name}.Step", gi);
        }
        var overrides = _override;
        if (@override is not null)
        {
            @override.Validate(_groups);
            @override.ValidateTasks(_tasks, $"{GetType().Name}.Step");
            overrides = new Override();
            overrides.Merge(_override);
            overrides.Merge(@override);
        }

        if (_tasks > 0)
        {
            loss = TaskBatching.TaskLoss(loss, _tasks, $"{GetType().Name}.Step");
        }
        IReadOnlyList<Tensor?> grads = Gradients(loss, current);
        var callback = gradCallback ?? _options.GradCallback;
        if (callback is not null)
        {
            grads = callback(grads) ?? throw new InvalidOperationException($"{GetType().Name}.Step: the gradient callback returned null.");
            if (grads.Count != current.Count)
            {
                throw new InvalidOperationException($"{GetType().Name}.Step: the gradient callback returned {grads.Count} gradients for {current.Count} parameters.");
            }
            for (int i = 0; i < grads.Count; i++)
            {
                if (grads[i] is { } g && (g.Shape != current[i].Shape || g.DType != current[i].DType || g.Device != current[i].Device))
                {
                    throw new ArgumentException(
                        $"{GetType().Name}.Step: the gradient callback returned for parameter {i}{NameOf(i)} a {g.Shape} {g.DType.Name()} gradient on {g.Device}; the parameter is {current[i].Shape} {current[i].DType.Name()} on {current[i].Device}.",
                        nameof(gradCallback));
                }
            }
        }

        // The rule replaces state tensors and advances the step count: it works on copies, which
        // replace the state only once every parameter has been updated.
        var updated = new Tensor[current.Count];
        var newState = new ParamState?[current.Count];
        bool track = _options.TrackHigherGrads;
        using (track ? Autograd.EnableGrad() : Autograd.NoGrad())
        {
            var hypers = new IHyperParameters[_groups.Count];
            for (int i = 0; i < current.Count; i++)
            {
                var p = current[i];
                int gi = _groupOf[i];
                if (gi < 0 || grads[i] is not { } g)
                {
                    updated[i] = p;
                    continue;
                }
                var state = _state[i]?.ShallowCopy() ?? new ParamState();
                if (_tasks > 0)
                {
                    updated[i] = TaskBatching.Update(_rule, p, g, state, new OverriddenHyperParameters(_groups[gi], overrides, gi, p.Rank), _tasks, NameOf(i));
                }
                else
                {
                    hypers[gi] ??= new OverriddenHyperParameters(_groups[gi], overrides, gi);
                    updated[i] = _rule.Update(p, g, state, hypers[gi]);
                }
                newState[i] = state;
            }
        }
        if (!track)
        {
            for (int i = 0; i < updated.Length; i++)
            {
                // Every trainable weight becomes a fresh leaf, an unchanged one too (a weight the loss
                // does not use would otherwise stay the model's own tensor with copyInitialWeights
                // false, and test-time gradients would reach the model). Frozen weights pass through.
                if (current[i].RequiresGrad || !ReferenceEquals(updated[i], current[i]) || !updated[i].IsLeaf)
                {
                    updated[i] = updated[i].Detach().WithRequiresGrad(current[i].RequiresGrad);
                }
            }
        }
        bool truncate = track && _options.TruncateEvery is int k && (_steps + 1) % k == 0;
        if (truncate)
        {
            updated = updated.Select(t => t.RequiresGrad ? t.Detach().WithRequiresGrad() : t).ToArray();
        }

        // Commit: nothing below can fail on valid input.
        fmodel?.UpdateParams(updated);
        for (int i = 0; i < newState.Length; i++)
        {
            if (newState[i] is { } ns)
            {
                _state[i] = ns;
            }
        }
        if (@override is not null)
        {
            _override.Merge(@override);
        }
        _steps++;
        if (truncate)
        {
            DetachState();
        }
        if (callback is null)
        {
            ReleaseGradients(grads, current, updated);
        }
        return updated;
    }

    private const string UsedGradient = "the differentiable optimizer's Step (a gradient it took from the loss and used)";

    // Scratch of ReleaseGradients for many parameters: the gradients' families, and those two of them share.
    private HashSet<VersionCounter>? _gradFamilies, _shared;

    /// <summary>
    /// The gradients of a step are the engine's and no one else saw them (no callback): once the rule
    /// has used them, each whose storage no weight, state tensor or other gradient shares goes back to
    /// its pool (now, or when the last tape node saving it is released), not to the garbage collector.
    /// A rule that keeps the gradient (SGD's first momentum buffer is the gradient itself) keeps it whole.
    /// Rules work per parameter, so gradient i can only be held by weight i, its update or its state;
    /// across parameters only two gradients can share a storage (views of one).
    /// </summary>
    private void ReleaseGradients(IReadOnlyList<Tensor?> grads, IReadOnlyList<Tensor> current, Tensor[] updated)
    {
        HashSet<VersionCounter>? shared = null;
        if (grads.Count > 32)
        {
            var families = _gradFamilies ??= new HashSet<VersionCounter>(FamilyIdentity.Instance);
            shared = _shared ??= new HashSet<VersionCounter>(FamilyIdentity.Instance);
            foreach (var g in grads)
            {
                if (g is not null && !families.Add(g.Version))
                {
                    shared.Add(g.Version);
                }
            }
            families.Clear();
        }
        for (int i = 0; i < grads.Count; i++)
        {
            if (grads[i] is not { } g)
            {
                continue;
            }
            var family = g.Version;
            if (ReferenceEquals(family, current[i].Version) || ReferenceEquals(family, updated[i].Version)
                || (shared is null ? SharedWithAnother(grads, i) : shared.Contains(family)))
            {
                continue;
            }
            if (_state[i] is { } state && StateHolds(state, family))
            {
                continue;
            }
            g.FreeIntermediate(UsedGradient);
        }
        shared?.Clear();
    }

    private static bool SharedWithAnother(IReadOnlyList<Tensor?> grads, int i)
    {
        var family = grads[i]!.Version;
        for (int j = 0; j < grads.Count; j++)
        {
            if (j != i && grads[j] is { } h && ReferenceEquals(h.Version, family))
            {
                return true;
            }
        }
        return false;
    }

    private static bool StateHolds(ParamState state, VersionCounter family)
    {
        foreach (var t in state.Tensors.Values)
        {
            if (ReferenceEquals(t.Version, family))
            {
                return true;
            }
        }
        return false;
    }

    private string NameOf(int i) =>
        _options.FModel is { } f && i < f.ParameterNames.Count ? $" ('{f.ParameterNames[i]}')" : "";

    /// <summary>Checks the weights a step is given against the parameters the optimizer was built for.</summary>
    private void CheckParameters(IReadOnlyList<Tensor> parameters)
    {
        if (parameters.Count != _groupOf.Length)
        {
            throw new ArgumentException($"{GetType().Name}.Step got {parameters.Count} parameters, but the optimizer was built for {_groupOf.Length}.", nameof(parameters));
        }
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i] ?? throw new ArgumentNullException(nameof(parameters), $"{GetType().Name}.Step: parameter {i}{NameOf(i)} is null.");
            var r = _reference[i];
            var device = _options.Device ?? _options.FModel?.InitFastParams[i].Device ?? r.Device;
            var shape = _tasks > 0 ? TaskBatching.WithTasks(r.Shape, _tasks) : r.Shape;
            if (p.Shape != shape || p.DType != r.DType || p.Device != device)
            {
                throw new ArgumentException(
                    $"{GetType().Name}.Step: parameter {i}{NameOf(i)} is {p.Shape} {p.DType.Name()} on {p.Device}, but the optimizer was built for {shape} {r.DType.Name()} on {device}{(_tasks > 0 ? $" ({_tasks} tasks of {r.Shape})" : "")}.",
                    nameof(parameters));
            }
        }
    }

    private Tensor?[] Gradients(Tensor loss, IReadOnlyList<Tensor> current)
    {
        var wanted = new List<Tensor>();
        var slot = new int[current.Count];
        for (int i = 0; i < current.Count; i++)
        {
            slot[i] = -1;
            if (_groupOf[i] >= 0 && current[i].RequiresGrad)
            {
                slot[i] = wanted.Count;
                wanted.Add(current[i]);
            }
        }
        var grads = new Tensor?[current.Count];
        if (wanted.Count == 0)
        {
            return grads;
        }
        if (!loss.RequiresGrad)
        {
            throw new ArgumentException(
                $"{GetType().Name}.Step: the loss ({loss.Describe()}) has no graph back to the fast weights, so the step would update nothing. " +
                "It was computed under Autograd.NoGrad(), from detached tensors, or without the fast weights (use fmodel.Forward).", nameof(loss));
        }
        bool createGraph = _options.TrackHigherGrads && !_options.FirstOrder;
        var found = Autograd.Grad([loss], wanted, createGraph: createGraph, allowUnused: true, retainGraph: true);
        for (int i = 0; i < current.Count; i++)
        {
            grads[i] = slot[i] >= 0 ? found[slot[i]] : null;
        }
        return grads;
    }

    /// <summary>Cuts the graph behind the optimizer state (truncated backpropagation); values are kept.</summary>
    public void DetachState()
    {
        for (int i = 0; i < _state.Length; i++)
        {
            if (_state[i] is { } s)
            {
                foreach (var key in s.Tensors.Keys.ToList())
                {
                    s.Tensors[key] = s.Tensors[key].Detach();
                }
            }
        }
    }

    /// <summary>
    /// Cuts the graph behind both the optimizer state and the functional module's latest fast
    /// weights: backpropagation through later steps stops here.
    /// </summary>
    public void Truncate()
    {
        DetachState();
        _options.FModel?.DetachFastParams();
    }

    /// <summary>
    /// Writes this optimizer's state (detached) and step counts into <paramref name="target"/> for
    /// the parameters in <paramref name="targetParams"/>, so a later context continues from here.
    /// </summary>
    public void CopyStateTo(Optimizer target, IEnumerable<Tensor> targetParams)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(targetParams);
        if (_tasks > 0)
        {
            throw new InvalidOperationException(
                $"CopyStateTo: this optimizer is task-batched ({_tasks} tasks, one state per task), and {target.GetType().Name} keeps one state per parameter; read the state of one task with StateOf(i) and Select(0, task).");
        }
        var list = targetParams.ToArray();
        if (list.Length != _state.Length)
        {
            throw new ArgumentException($"CopyStateTo got {list.Length} parameters, but the optimizer has {_state.Length}.", nameof(targetParams));
        }
        var owned = new HashSet<Tensor>(target.ParamGroups.SelectMany(g => g.Params), ReferenceEqualityComparer.Instance);
        for (int i = 0; i < list.Length; i++)
        {
            var p = list[i] ?? throw new ArgumentNullException(nameof(targetParams), $"CopyStateTo: parameter {i} is null.");
            if (_state[i] is null)
            {
                continue;
            }
            if (p.Shape != _reference[i].Shape)
            {
                throw new ArgumentException($"CopyStateTo: parameter {i}{NameOf(i)} is {p.Describe()}, but the state is for {_reference[i].Shape}.", nameof(targetParams));
            }
            if (!owned.Contains(p))
            {
                throw new ArgumentException($"CopyStateTo: parameter {i}{NameOf(i)} ({p.Describe()}) is not optimized by the target {target.GetType().Name}, so its state would never be read.", nameof(targetParams));
            }
        }
        // Copied (and moved) first, written after: a move that fails leaves the target as it was.
        var copies = new ParamState?[list.Length];
        for (int i = 0; i < list.Length; i++)
        {
            copies[i] = _state[i]?.DetachedCopy(list[i].Device);
        }
        for (int i = 0; i < list.Length; i++)
        {
            if (copies[i] is { } copy)
            {
                target.StateFor(list[i]).Assign(copy);
            }
        }
    }

    /// <summary>
    /// Hyperparameters of one group with overrides on top. For a task-batched parameter of rank
    /// <paramref name="rank"/>, per-task values [T] are read as [T, 1, ..., 1] of that rank, so they
    /// broadcast over each task's slice.
    /// </summary>
    private sealed class OverriddenHyperParameters(Dictionary<string, double> group, Override overrides, int index, int rank = 0) : IHyperParameters
    {
        private Dictionary<string, HyperValue>? _shaped;

        public HyperValue this[string name] => overrides.TryGet(name, index, out var v) ? Shaped(name, v)
            : group.TryGetValue(name, out var d) ? d
            : throw new KeyNotFoundException($"Parameter group {index} has no hyperparameter '{name}'; it has: {string.Join(", ", group.Keys)}.");

        private HyperValue Shaped(string name, HyperValue v)
        {
            if (rank == 0 || v.Tensor is not { Rank: 1 } perTask)
            {
                return v;
            }
            _shaped ??= [];
            if (!_shaped.TryGetValue(name, out var shaped))
            {
                shaped = HyperValue.PerTask(TaskBatching.PerTaskView(perTask, rank));
                _shaped[name] = shaped;
            }
            return shaped;
        }

        public bool Flag(string name) => group.TryGetValue(name, out var v) && v != 0;
    }
}
