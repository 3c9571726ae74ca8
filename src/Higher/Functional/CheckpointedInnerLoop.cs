using Module = Higher.Nn.Module;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Functional;

/// <summary>
/// The loss of inner step <paramref name="step"/> (0-based, counted over every <see cref="CheckpointedInnerLoop.Unroll"/>
/// of the context), computed with <paramref name="fmodel"/> (<c>fmodel.Forward(x[step])</c>). A checkpointed unroll calls
/// it again for every step of a segment it recomputes, so it must be a function of the step and the fast weights only:
/// the same batch for the same step, random numbers from the generators the context rewinds (see
/// <see cref="CheckpointedInnerLoop.Create"/>), and no side effects that must happen once. Tensors it creates are
/// released when its segment ends: make the batches before the unroll, and do not cache tensors made inside it.
/// </summary>
public delegate Tensor InnerStepLoss(FunctionalModule fmodel, int step);

/// <summary>
/// A tracked inner loop whose memory grows with the square root of its length instead of linearly: the unroll keeps
/// only every k-th state (fast weights and optimizer state) and recomputes each segment of k steps when the backward
/// pass reaches it (Chen et al. 2016's gradient checkpointing applied to an unroll). The meta-gradients equal those of
/// the fully kept unroll (<see cref="InnerLoop.Create"/> stepping <see cref="DifferentiableOptimizer.Step"/> by hand).
/// <code>
/// using var ctx = CheckpointedInnerLoop.Create(model, opt, checkpointEvery: 32, copyInitialWeights: false);
/// ctx.Unroll(1000, (fmodel, t) => F.CrossEntropy(fmodel.Forward(xs[t]), ys[t]));
/// F.CrossEntropy(ctx.FModel.Forward(xq), yq).Backward();   // fills model.Parameters()' Grad, and lr's with an override
/// </code>
/// <para>
/// Because a segment is recomputed, the step is given as a function (<see cref="InnerStepLoss"/>) instead of a loop of
/// <c>diffopt.Step(loss)</c>. Per-step hyperparameters (a learning-rate schedule) come from <c>overrideAt</c>. Random ops
/// replay the same numbers: the context records the counters of <see cref="Generator.Default"/>, of every
/// generator of the model's <see cref="Dropout"/> and recurrent layers, and of the
/// <c>generators</c> given, at each segment start, and rewinds them while it recomputes the segment (a replay that
/// draws a different number of values throws: the step was not deterministic). Only the generators a segment drew from
/// are rewound. Do not draw from those generators on another thread during the unroll or its backward pass.
/// </para>
/// <para>
/// Memory: T steps in segments of k keep T/k states (one flat vector each) plus, during the backward pass, the graph
/// of one segment; k ≈ √T minimises the sum. Time: each step runs twice forward (once in the unroll, once when its
/// segment is recomputed) and once backward. Gradients reach every leaf the steps depend on: the time-0 weights,
/// hyperparameter tensors of the overrides, any leaf the loss captures (a tensor computed from leaves before the
/// unroll is differentiated through to those leaves, so ask for the gradients of the leaves). The meta-gradient cannot
/// itself be differentiated again (a backward with <c>createGraph: true</c> through a segment throws
/// <see cref="NotSupportedException"/>); use the kept unroll for that.
/// </para>
/// </summary>
public sealed class CheckpointedInnerLoop : IDisposable
{
    private readonly FunctionalModule _replayModel;
    private readonly DifferentiableOptimizer _replayOpt;
    private readonly Override _base = new();
    private readonly Generator[] _ownGenerators;
    private Tensor[] _weights;
    private ParamState?[] _states;
    private Dictionary<ModuleBuffer, Tensor?> _buffers;
    private bool _disposed;

    private CheckpointedInnerLoop(FunctionalModule fmodel, FunctionalModule replayModel, DifferentiableOptimizer replayOpt, int checkpointEvery, Override? @override, Generator[] generators)
    {
        FModel = fmodel;
        _replayModel = replayModel;
        _replayOpt = replayOpt;
        CheckpointEvery = checkpointEvery;
        if (@override is not null)
        {
            _base.Merge(@override);
        }
        _ownGenerators = generators;
        _weights = [.. fmodel.InitFastParams];
        _states = replayOpt.CaptureState();
        _buffers = fmodel.SnapshotBuffers();
    }

    /// <summary>
    /// A checkpointed inner loop over <paramref name="model"/> with the differentiable version of <paramref name="opt"/>
    /// (its hyperparameters and detached state are copied, as <see cref="InnerLoop.Create"/> does).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="opt">An optimizer over (a subset of) the model's parameters, of a registered type.</param>
    /// <param name="checkpointEvery">Steps per segment k (at least 1): a state is kept every k steps. √T is the memory optimum for T steps.</param>
    /// <param name="device">Device to cast fast weights and state to.</param>
    /// <param name="copyInitialWeights">True: time-0 weights are detached copies (gradients reach <c>FModel.Parameters(0)</c>). False: they are the model's parameters (the outer backward fills their Grad).</param>
    /// <param name="override">Hyperparameter overrides for every step, possibly tensors that require grad.</param>
    /// <param name="generators">Generators the step closure draws from besides <see cref="Generator.Default"/> and the model's own (a data sampler's), rewound when a segment is recomputed.</param>
    public static CheckpointedInnerLoop Create(Module model, Optimizer opt, int checkpointEvery, Device? device = null, bool copyInitialWeights = true,
        Override? @override = null, IEnumerable<Generator>? generators = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(opt);
        if (checkpointEvery < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(checkpointEvery), checkpointEvery, $"CheckpointedInnerLoop.Create: checkpointEvery must be at least 1 (steps per recomputed segment); got {checkpointEvery}.");
        }
        var given = generators?.ToList() ?? [];
        for (int i = 0; i < given.Count; i++)
        {
            if (given[i] is null)
            {
                throw new ArgumentNullException(nameof(generators), $"CheckpointedInnerLoop.Create: generator {i} is null.");
            }
        }
        var fmodel = Patch.Monkeypatch(model, device, copyInitialWeights, trackHigherGrads: true);
        var replayModel = Patch.Monkeypatch(model, device, copyInitialWeights: true, trackHigherGrads: true);
        replayModel.MaxHistory = 1;
        DifferentiableOptimizer replayOpt;
        try
        {
            replayOpt = DiffOptim.Get(opt, model.Parameters(), new DifferentiableOptimizerOptions
            {
                FModel = replayModel,
                Device = device,
                Override = @override,
                TrackHigherGrads = true,
            });
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"CheckpointedInnerLoop.Create: {e.Message}", nameof(opt), e);
        }
        return new CheckpointedInnerLoop(fmodel, replayModel, replayOpt, checkpointEvery, @override, [.. ModuleGenerators(model), .. given]);
    }

    /// <summary>
    /// The functional view whose time-0 weights start the unroll and whose latest weights are its result, with a graph
    /// through every segment (compute the query loss with <c>FModel.Forward</c>). Its history holds time 0 and the
    /// fast weights at the end of each segment only; its buffers are those at the end of the last unroll.
    /// </summary>
    public FunctionalModule FModel { get; }

    /// <summary>Steps per recomputed segment.</summary>
    public int CheckpointEvery { get; }

    /// <summary>Steps unrolled so far (the next step's index).</summary>
    public int StepCount { get; private set; }

    /// <summary>The latest optimizer state of fast weight <paramref name="index"/> (with its graph), null before its first update.</summary>
    public ParamState? StateOf(int index)
    {
        if ((uint)index >= (uint)_states.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"CheckpointedInnerLoop.StateOf: there are {_states.Length} fast weights.");
        }
        return _states[index];
    }

    /// <summary>
    /// Runs <paramref name="steps"/> more steps (numbered from <see cref="StepCount"/>): step t takes the gradient of
    /// <c>loss(fmodel, t)</c> and applies the optimizer's update with the overrides of <see cref="Create"/> and, for that
    /// step only, <c>overrideAt(t)</c> on top (null: none). Returns the new latest fast weights (also
    /// <c>FModel.FastParams</c>). A step that throws leaves the context as it was before the call (the generators rewound).
    /// </summary>
    public IReadOnlyList<Tensor> Unroll(int steps, InnerStepLoss loss, Func<int, Override?>? overrideAt = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(loss);
        if (steps < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(steps), steps, $"CheckpointedInnerLoop.Unroll: steps must be at least 0; got {steps}.");
        }
        var generators = Generators();
        var rollback = Offsets(generators);
        var weights = _weights;
        var states = _states;
        var buffers = _buffers;
        var boundaries = new List<Tensor[]>();
        try
        {
            int end = StepCount + steps;
            for (int s = StepCount; s < end; s += CheckpointEvery)
            {
                var segment = new Segment(this, s, Math.Min(s + CheckpointEvery, end), loss, overrideAt, generators, weights, states, buffers);
                (weights, states, buffers) = segment.Forward();
                boundaries.Add(weights);
            }
        }
        catch
        {
            Rewind(generators, rollback);
            throw;
        }
        foreach (var b in boundaries)
        {
            FModel.UpdateParams(b);
        }
        FModel.RestoreBuffers(buffers);
        _weights = weights;
        _states = states;
        _buffers = buffers;
        StepCount += steps;
        return weights;
    }

    /// <summary>Retires the context: later unrolls throw. Backward passes through unrolls already made still work.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        FModel.ClearHistory();
        FModel.MarkDisposed("checkpointed inner loop");
    }

    /// <summary>The generators of the model's random layers (Dropout's, a recurrent layer's inter-layer dropout).</summary>
    private static List<Generator> ModuleGenerators(Module model)
    {
        var found = new List<Generator>();
        foreach (var m in model.Modules())
        {
            var g = m switch
            {
                Dropout d => d.Generator,
                RecurrentBase r => r.Generator,
                _ => null,
            };
            if (g is not null && !found.Contains(g))
            {
                found.Add(g);
            }
        }
        return found;
    }

    private Generator[] Generators()
    {
        var list = new List<Generator> { Generator.Default };
        foreach (var g in _ownGenerators)
        {
            if (!list.Contains(g))
            {
                list.Add(g);
            }
        }
        return [.. list];
    }

    private static ulong[] Offsets(Generator[] generators) => generators.Select(g => g.Offset).ToArray();

    private static void Rewind(Generator[] generators, ulong[] offsets)
    {
        for (int i = 0; i < generators.Length; i++)
        {
            generators[i].Rewind(offsets[i]);
        }
    }

    /// <summary>Runs steps [start, end) on the replay view from the given state; returns the state at the end, with its graph.</summary>
    private (Tensor[] Weights, ParamState?[] States, Dictionary<ModuleBuffer, Tensor?> Buffers) Run(
        int start, int end, InnerStepLoss loss, Func<int, Override?>? overrideAt, Tensor[] weights, ParamState?[] states, Dictionary<ModuleBuffer, Tensor?> buffers)
    {
        _replayModel.RestoreBuffers(buffers);
        _replayModel.UpdateParams(weights);
        _replayOpt.RestoreState(states);
        for (int t = start; t < end; t++)
        {
            var l = loss(_replayModel, t) ?? throw new InvalidOperationException($"CheckpointedInnerLoop.Unroll: the loss of step {t} is null.");
            if (l.Numel != 1)
            {
                throw new ArgumentException($"CheckpointedInnerLoop.Unroll: the loss of step {t} is {l.Describe()}; it must have one element.", nameof(loss));
            }
            _replayOpt.ResetOverride(_base);
            _replayOpt.Step(l, @override: overrideAt?.Invoke(t));
        }
        _replayOpt.ResetOverride(_base);
        return ([.. _replayModel.FastParams], _replayOpt.CaptureState(), _replayModel.SnapshotBuffers());
    }

    /// <summary>One segment of steps: its forward (kept: its start state) and its recomputation in the backward pass.</summary>
    private sealed class Segment(CheckpointedInnerLoop owner, int start, int end, InnerStepLoss loss, Func<int, Override?>? overrideAt,
        Generator[] generators, Tensor[] weights, ParamState?[] states, Dictionary<ModuleBuffer, Tensor?> buffers)
    {
        // The start state's values (detached), what the node keeps; and the generators' counters at start and end.
        private readonly Tensor[] _startWeights = weights.Select(w => w.Detach().WithRequiresGrad(w.RequiresGrad)).ToArray();
        private readonly bool[] _weightGrad = weights.Select(w => w.RequiresGrad).ToArray();
        private readonly ParamState?[] _startStates = states.Select(s => s is null ? null : DetachedShare(s)).ToArray();
        private readonly ulong[] _startOffsets = Offsets(generators);
        private ulong[] _endOffsets = [];
        private List<(int Param, string? Key, Shape Shape)> _layout = [];
        private List<Tensor> _externals = [];

        public int Start => start;

        public int End => end;

        /// <summary>Runs the segment, keeps what its backward needs, and returns the end state on the graph of one node.</summary>
        public (Tensor[] Weights, ParamState?[] States, Dictionary<ModuleBuffer, Tensor?> Buffers) Forward()
        {
            Tensor output;
            Tensor[] endWeights;
            ParamState?[] endStates;
            Dictionary<ModuleBuffer, Tensor?> endBuffers;
            var inputs = new List<Tensor>();
            using (var scope = TensorScope.BeginInternal("a checkpointed segment's forward"))
            {
                var (leafWeights, leafStates, leaves) = Leaves();
                (endWeights, endStates, endBuffers) = owner.Run(start, end, loss, overrideAt, leafWeights, leafStates, buffers);
                _endOffsets = Offsets(generators);
                _layout = Layout(endWeights, endStates);
                var flat = Pack(endWeights, endStates, _layout, "Unroll");
                _externals = Externals(flat, leaves);
                output = scope.Keep(flat.Detach());
                // What the segment does not differentiate (frozen weights, constant state, buffers) passes on as values;
                // the rest becomes slices of the node's output below.
                for (int i = 0; i < endWeights.Length; i++)
                {
                    if (!endWeights[i].RequiresGrad)
                    {
                        endWeights[i] = scope.Keep(endWeights[i].Detach());
                    }
                }
                foreach (var s in endStates)
                {
                    if (s is not null)
                    {
                        foreach (var key in s.Tensors.Keys.ToList())
                        {
                            if (!s.Tensors[key].RequiresGrad)
                            {
                                s.Tensors[key] = scope.Keep(s.Tensors[key].Detach());
                            }
                        }
                    }
                }
                foreach (var b in endBuffers.Values)
                {
                    if (b is not null)
                    {
                        scope.Keep(b);
                    }
                }
            }
            for (int i = 0; i < weights.Length; i++)
            {
                if (_weightGrad[i])
                {
                    inputs.Add(weights[i]);
                }
            }
            foreach (var (param, key) in StartLayout())
            {
                inputs.Add(states[param]![key]);
            }
            inputs.AddRange(_externals);
            if (_layout.Count == 0)
            {
                return (endWeights, endStates, endBuffers);
            }
            output.AttachGradFn(new CheckpointNode(this, [.. inputs], output));
            long offset = 0;
            foreach (var (param, key, shape) in _layout)
            {
                var piece = output.Narrow(0, (int)offset, (int)shape.Numel).Reshape(shape.ToArray());
                offset += shape.Numel;
                if (key is null)
                {
                    endWeights[param] = piece;
                }
                else
                {
                    endStates[param]![key] = piece;
                }
            }
            return (endWeights, endStates, endBuffers);
        }

        /// <summary>The recomputation: the gradients of the node's inputs given the gradient of its packed end state.</summary>
        public Tensor?[] Backward(Tensor gradient)
        {
            if (Autograd.IsGradEnabled)
            {
                throw new NotSupportedException(
                    $"The backward of a checkpointed segment (steps {start}..{end - 1}) does not record its own graph, so the meta-gradient of a CheckpointedInnerLoop cannot be differentiated again (createGraph: true). Use InnerLoop.Create for higher derivatives.");
            }
            // Only the generators the segment drew from are rewound (and checked): the others are left alone.
            var used = Enumerable.Range(0, generators.Length).Where(i => _endOffsets[i] != _startOffsets[i]).ToArray();
            var now = Offsets(generators);
            try
            {
                foreach (int i in used)
                {
                    generators[i].Rewind(_startOffsets[i]);
                }
                using var scope = TensorScope.BeginInternal("a checkpointed segment's recomputation");
                using var grad = Autograd.EnableGrad();
                var (leafWeights, leafStates, leaves) = Leaves();
                var (endWeights, endStates, _) = owner.Run(start, end, loss, overrideAt, leafWeights, leafStates, buffers);
                var reached = Offsets(generators);
                foreach (int i in used)
                {
                    if (reached[i] != _endOffsets[i])
                    {
                        throw new InvalidOperationException(
                            $"CheckpointedInnerLoop: recomputing steps {start}..{end - 1} drew {reached[i] - _startOffsets[i]} random numbers from generator {i} (seed {generators[i].Seed}), but the unroll drew {_endOffsets[i] - _startOffsets[i]}: the step closure is not a deterministic function of its step, so the meta-gradient would be wrong.");
                    }
                }
                var layout = Layout(endWeights, endStates);
                if (!layout.SequenceEqual(_layout))
                {
                    throw new InvalidOperationException(
                        $"CheckpointedInnerLoop: recomputing steps {start}..{end - 1} produced other fast weights or optimizer state ({Describe(layout)}) than the unroll ({Describe(_layout)}): the step closure is not a deterministic function of its step.");
                }
                var flat = Pack(endWeights, endStates, layout, "backward");
                var targets = new List<Tensor>(leaves);
                targets.AddRange(_externals);
                var grads = Autograd.Grad([flat], targets, [gradient], allowUnused: true, retainGraph: true);
                for (int i = 0; i < grads.Length; i++)
                {
                    if (grads[i] is { } g)
                    {
                        scope.Keep(g);
                    }
                }
                return grads;
            }
            finally
            {
                foreach (int i in used)
                {
                    generators[i].Rewind(now[i]);
                }
            }
        }

        /// <summary>Fresh leaves with the start state's values, and the list of those that require grad in the node's input order.</summary>
        private (Tensor[] Weights, ParamState?[] States, List<Tensor> Leaves) Leaves()
        {
            var leaves = new List<Tensor>();
            var w = new Tensor[_startWeights.Length];
            for (int i = 0; i < w.Length; i++)
            {
                w[i] = _startWeights[i].Detach().WithRequiresGrad(_weightGrad[i]);
                if (_weightGrad[i])
                {
                    leaves.Add(w[i]);
                }
            }
            var s = new ParamState?[_startStates.Length];
            for (int i = 0; i < s.Length; i++)
            {
                if (_startStates[i] is { } st)
                {
                    var copy = new ParamState { Step = st.Step };
                    foreach (var (key, t) in st.Tensors)
                    {
                        copy.Tensors[key] = t.Detach().WithRequiresGrad(t.RequiresGrad);
                    }
                    s[i] = copy;
                }
            }
            foreach (var (param, key) in StartLayout())
            {
                leaves.Add(s[param]![key]);
            }
            return (w, s, leaves);
        }

        /// <summary>The start state tensors that require grad, in a fixed order.</summary>
        private IEnumerable<(int Param, string Key)> StartLayout()
        {
            for (int i = 0; i < _startStates.Length; i++)
            {
                if (_startStates[i] is { } st)
                {
                    foreach (var key in st.Tensors.Keys.Order(StringComparer.Ordinal))
                    {
                        if (st.Tensors[key].RequiresGrad)
                        {
                            yield return (i, key);
                        }
                    }
                }
            }
        }

        private static ParamState DetachedShare(ParamState s)
        {
            var copy = new ParamState { Step = s.Step };
            foreach (var (key, t) in s.Tensors)
            {
                copy.Tensors[key] = t.Detach().WithRequiresGrad(t.RequiresGrad);
            }
            return copy;
        }

        /// <summary>The end tensors that require grad (what the node outputs), weights first, then state by parameter and name.</summary>
        private static List<(int Param, string? Key, Shape Shape)> Layout(Tensor[] endWeights, ParamState?[] endStates)
        {
            var layout = new List<(int, string?, Shape)>();
            for (int i = 0; i < endWeights.Length; i++)
            {
                if (endWeights[i].RequiresGrad)
                {
                    layout.Add((i, null, endWeights[i].Shape));
                }
            }
            for (int i = 0; i < endStates.Length; i++)
            {
                if (endStates[i] is { } st)
                {
                    foreach (var key in st.Tensors.Keys.Order(StringComparer.Ordinal))
                    {
                        if (st.Tensors[key].RequiresGrad)
                        {
                            layout.Add((i, key, st.Tensors[key].Shape));
                        }
                    }
                }
            }
            return layout;
        }

        private static string Describe(List<(int Param, string? Key, Shape Shape)> layout) =>
            string.Join(", ", layout.Select(e => e.Key is null ? $"weight {e.Param} {e.Shape}" : $"state '{e.Key}' of {e.Param} {e.Shape}"));

        /// <summary>The end tensors of <paramref name="layout"/>, flattened into one vector (a node has one output).</summary>
        private static Tensor Pack(Tensor[] endWeights, ParamState?[] endStates, List<(int Param, string? Key, Shape Shape)> layout, string call)
        {
            if (layout.Count == 0)
            {
                return Tensor.Zeros([0], endWeights.Length > 0 ? endWeights[0].DType : DType.Float32, endWeights.Length > 0 ? endWeights[0].Device : null);
            }
            var pieces = new Tensor[layout.Count];
            for (int i = 0; i < layout.Count; i++)
            {
                var (param, key, _) = layout[i];
                var t = key is null ? endWeights[param] : endStates[param]![key];
                if (i > 0 && (t.DType != pieces[0].DType || t.Device != pieces[0].Device))
                {
                    throw new NotSupportedException(
                        $"CheckpointedInnerLoop.{call}: the fast weights and optimizer state are kept as one vector per segment, so they must share one dtype and device; {Describe([layout[i]])} is {t.DType.Name()} on {t.Device}, {Describe([layout[0]])} is {pieces[0].DType.Name()} on {pieces[0].Device}.");
                }
                pieces[i] = t.Reshape(-1);
            }
            return pieces.Length == 1 ? pieces[0] : Tensor.Cat(pieces);
        }

        /// <summary>
        /// The leaves that require grad which the segment's end state depends on, besides its own start leaves: the
        /// time-0 weights a loss captures, hyperparameter tensors, meta-parameters of the loss. A walk of the graph.
        /// </summary>
        private static List<Tensor> Externals(Tensor flat, List<Tensor> own)
        {
            var mine = new HashSet<Tensor>(own, ReferenceEqualityComparer.Instance);
            var found = new List<Tensor>();
            var seenLeaves = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
            var visited = new HashSet<Tape.Node>(ReferenceEqualityComparer.Instance);
            var stack = new Stack<Tape.Node>();
            if (flat.GradFn is { } root)
            {
                stack.Push(root);
                visited.Add(root);
            }
            while (stack.Count > 0)
            {
                var node = stack.Pop();
                foreach (var edge in node.Inputs)
                {
                    if (edge.Leaf is { } leaf)
                    {
                        if (!mine.Contains(leaf) && seenLeaves.Add(leaf))
                        {
                            found.Add(leaf);
                        }
                    }
                    else if (edge.Fn is { } fn && visited.Add(fn))
                    {
                        stack.Push(fn);
                    }
                }
            }
            return found;
        }
    }

    /// <summary>The tape node of one segment: its inputs are the start state and the external leaves, its output the packed end state.</summary>
    private sealed class CheckpointNode(Segment segment, Tensor[] inputs, Tensor output) : Tape.Node(Tape.Saves.None, inputs, output, null)
    {
        internal override string Name => "CheckpointedSegmentBackward";

        protected override Tape.GradList Backward(Tensor gradOutput) => segment.Backward(gradOutput);
    }
}
