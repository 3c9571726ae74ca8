namespace Higher.Tape;

/// <summary>
/// One backward pass: orders the reachable nodes topologically (iteratively, so long unrolls do
/// not overflow the stack), prunes nodes that lead to no requested input, and sums gradients
/// with differentiable ops so the pass itself can be recorded.
/// <para>
/// Memory: every storage made while the pass runs is the pass's own until it hands it out (the
/// gradients it returns). Between nodes, each of them that no gradient slot holds
/// (<see cref="VersionCounter.Pending"/>) and no tape node saves (<see cref="VersionCounter.Saved"/>)
/// is dead and goes back to its backend's pool at once, as in a reference-counted engine; one that
/// a recorded node saves (with createGraph) is released when the last node saving it is released.
/// Tensors the user made (inputs, seeds, forward activations) are never touched.
/// </para>
/// </summary>
internal sealed class Engine
{
    /// <summary>The storages made on this thread by the running pass's nodes (null outside a pass).</summary>
    [ThreadStatic]
    private static List<VersionCounter>? t_capture;

    private const string FreedBy = "the backward pass that made it (nothing could reach it any more)";

    // The pass's collections (this and the target maps below) are the thread's scratch, taken for the
    // pass in Run: every Autograd.Grad of an inner loop made them anew before, the slots list growing
    // from empty each time.
    private List<VersionCounter> _dropped = null!;

    /// <summary>Records a new storage family as made by the running pass, if any (called for every new storage).</summary>
    internal static void Capture(VersionCounter family) => t_capture?.Add(family);

    /// <summary>A tape node no longer saves a tensor of <paramref name="family"/>: frees it if a pass made it and nothing else holds it.</summary>
    internal static void Unsave(VersionCounter family)
    {
        if (Interlocked.Decrement(ref family.Saved) == 0)
        {
            TryFree(family);
        }
    }

    /// <summary>Something other than a slot (remembered channel sums) no longer holds <paramref name="family"/>: frees it if a pass made it and nothing else holds it.</summary>
    internal static void Unhold(VersionCounter family)
    {
        if (Interlocked.Decrement(ref family.Pending) == 0)
        {
            TryFree(family);
        }
    }

    private static void TryFree(VersionCounter family)
    {
        if (family.EngineOwned && family.Unheld)
        {
            TensorScope.ReleaseNow(family, family.Owner ?? FreedBy);
        }
    }

    private static void Pend(Tensor g) => Interlocked.Increment(ref g.Version.Pending);

    private void Unpend(Tensor g)
    {
        Interlocked.Decrement(ref g.Version.Pending);
        _dropped.Add(g.Version);
    }
    // The targets' slots by tensor and, for non-leaf targets, by the node that produced them (nodes
    // keep edges, not their input tensors); set during Run only, null without targets.
    private Dictionary<Tensor, int>? _targets;
    private Dictionary<Node, int>? _targetNodes;
    // Target i's slot (its first occurrence among the targets), for InputGrad after the pass.
    private readonly int[]? _slotOf;
    private readonly Tensor?[] _targetGrads;
    private Dictionary<Node, Tensor> _nodeGrads = null!;
    // The nodes this pass claimed (see Claim), released when it ends.
    private List<Node> _claimed = null!;
    // False: the pass keeps its per-node state in the nodes it claimed (no hashing); true: another pass
    // (nested in a backward, or on another thread) held a node of this graph, and this pass keeps its
    // state in the maps instead (_visited, _needed, _nodeGrads, _targetNodes).
    private bool _mapped;
    private bool _conflict;
    private HashSet<Node> _visited = null!;
    private HashSet<Node> _needed = null!;
    // The leaves' gradients, for a pass without targets (Autograd.Backward) only.
    // (the leaves in the order first reached and their gradients; found by a scan while they are few,
    // by _leafIndex beyond LeafScanLimit)
    private readonly List<Tensor>? _leafOrder;
    private readonly List<Tensor>? _leafGradList;
    private Dictionary<Tensor, int>? _leafIndex;
    private const int LeafScanLimit = 32;

    public Engine(IReadOnlyList<Tensor>? targets)
    {
        if (targets is null)
        {
            _targetGrads = [];
            _leafOrder = [];
            _leafGradList = [];
            return;
        }
        _targetGrads = new Tensor?[targets.Count];
        _slotOf = new int[targets.Count];
        _targetList = targets;
        // Below the smallest topological number among the targets no node leads to one: the walk
        // stops there (an inner step's gradient does not walk the graphs of the steps before it).
        // A leaf target has no node and can be reached from anywhere: no bound then.
        _floor = int.MaxValue;
        foreach (var t in targets)
        {
            _floor = Math.Min(_floor, t.GradFn?.TopologicalNr ?? 0);
        }
    }

    private readonly IReadOnlyList<Tensor>? _targetList;
    private readonly int _floor;

    public Tensor? InputGrad(int i)
    {
        return _targetGrads[_slotOf![i]];
    }

    /// <summary>Number of leaves a pass without targets reached (see <see cref="LeafGrad"/>).</summary>
    public int LeafCount => _leafOrder!.Count;

    /// <summary>
    /// The <paramref name="i"/>-th leaf a pass without targets reached (in the order first reached)
    /// and its gradient; <c>Exclusive</c>: the pass made the gradient's storage and nothing else holds
    /// it (no node saves it, no other slot held it or a view of it, it is not a seed the caller
    /// passed), so it may become an accumulator that later passes add into in place.
    /// </summary>
    public (Tensor Leaf, Tensor Grad, bool Exclusive) LeafGrad(int i)
    {
        var leaf = _leafOrder![i];
        return (leaf, _leafGradList![i], _leafExclusive![i]);
    }

    private bool[]? _leafExclusive;

    public void Run(IReadOnlyList<Tensor> outputs, IReadOnlyList<Tensor?>? gradOutputs, bool createGraph, bool retainGraph)
    {
        if (gradOutputs is not null && gradOutputs.Count != outputs.Count)
        {
            throw new ArgumentException($"Got {gradOutputs.Count} gradient outputs for {outputs.Count} outputs.", nameof(gradOutputs));
        }
        // The pass's collections come from the thread's scratch (taken out of the slot, so a pass
        // nested inside a backward makes its own) and go back cleared, capacity kept.
        var scratch = t_scratch ?? new Scratch();
        t_scratch = null;
        var outer = t_capture;
        var outerPass = t_running;
        var captured = scratch.Captured;
        t_capture = captured;
        t_running = this;
        try
        {
            _nodeGrads = scratch.NodeGrads;
            _dropped = scratch.Dropped;
            _claimed = scratch.Claimed;
            _absorbed = scratch.Absorbed;
            _takenBroadcasts = scratch.TakenBroadcasts;
            _visited = scratch.Visited;
            _needed = scratch.Needed;
            if (_targetList is { } targets)
            {
                _targets = scratch.Targets;
                for (int i = 0; i < targets.Count; i++)
                {
                    _slotOf![i] = _targets.TryAdd(targets[i], i) ? i : _targets[targets[i]];
                }
            }
            if (!ClaimTargets() || !TopologicalOrder(outputs, scratch))
            {
                // A node of this graph belongs to another running pass: this one keeps its state in maps.
                ReleaseClaims();
                scratch.Post.Clear();
                _conflict = false;
                _mapped = true;
                if (_targetList is { } t)
                {
                    _targetNodes = scratch.TargetNodes;
                    for (int i = 0; i < t.Count; i++)
                    {
                        if (_slotOf![i] == i && t[i].GradFn is { } fn)
                        {
                            _targetNodes.TryAdd(fn, i);
                        }
                    }
                }
                TopologicalOrder(outputs, scratch);
            }
            Run(outputs, gradOutputs, createGraph, retainGraph, scratch);
        }
        finally
        {
            ReleaseClaims();
            _targets = null;
            _targetNodes = null;
            t_capture = outer;
            t_running = outerPass;
            scratch.Clear();
            t_scratch = scratch;
        }
    }

    private void Run(IReadOnlyList<Tensor> outputs, IReadOnlyList<Tensor?>? gradOutputs, bool createGraph, bool retainGraph, Scratch scratch)
    {
        using var mode = createGraph ? Autograd.EnableGrad() : Autograd.NoGrad();
        _accumulateInPlace = !createGraph;
        var order = scratch.Post;
        var captured = scratch.Captured;
        int swept = 0;

        for (int i = 0; i < outputs.Count; i++)
        {
            var o = outputs[i];
            var seed = gradOutputs?[i];
            if (seed is null)
            {
                if (o.Numel != 1)
                {
                    throw new ArgumentException(
                        $"Output {i} ({o.Describe()}) is not a scalar: a gradient can be implicitly created only for one-element outputs; pass gradOutputs.");
                }
                seed = Tensor.OnesLike(o);
            }
            else if (seed.Shape != o.Shape || seed.DType != o.DType)
            {
                throw new ArgumentException($"Gradient output {i} ({seed.Describe()}) does not match output {i} ({o.Describe()}).");
            }
            Accumulate(o, seed);
        }

        foreach (var node in order)
        {
            if (!TakeGrad(node, out var grad))
            {
                continue;
            }
            var inputGrads = node.Apply(grad);
            var inputs = node.Inputs;
            for (int k = 0; k < inputs.Length; k++)
            {
                var g = inputGrads[k];
                if (g is null)
                {
                    continue;
                }
                ref readonly var x = ref inputs[k];
                if (!x.RequiresGrad)
                {
                    continue;
                }
                if (g.Shape != x.Shape)
                {
                    // Only a sum returns its gradient unbroadcast (see Derivatives.Sum): kept small where it can wait.
                    if (!node.Is(Derivatives.Sum) || !g.Shape.IsBroadcastableTo(x.Shape))
                    {
                        throw new InvalidOperationException($"Internal error: {node.Name} returned a gradient of shape {g.Shape} for input {k} of shape {x.Shape}.");
                    }
                    if (x.Fn is { } waiting && Defer(waiting, g, x.Shape))
                    {
                        continue;
                    }
                    g = g.ExpandTo(x.Shape);
                }
                if (x.Leaf is { } leaf)
                {
                    Accumulate(leaf, g);
                }
                else if (x.Fn is { } fn)
                {
                    AccumulateNode(fn, g);
                }
            }
            // Every accumulator the backward added into came back as its input's gradient.
            _absorbed.Clear();
            // The deferred sums' gradients the backward took into its kernels (TakeDeferredBroadcast), used by now.
            foreach (var small in _takenBroadcasts)
            {
                Unpend(small);
            }
            _takenBroadcasts.Clear();
            // After the accumulation, so a saved tensor that came back as a gradient is held by its slot.
            if (!retainGraph)
            {
                node.Release();
            }
            Unpend(grad);
            swept = Sweep(captured, swept);
        }
        // Gradients left for nodes that lead to no requested input die with the pass.
        foreach (var g in _nodeGrads.Values)
        {
            Unpend(g);
        }
        _nodeGrads.Clear();
        foreach (var node in _claimed)
        {
            if (node.PassGrad is { } g)
            {
                node.PassGrad = null;
                Unpend(g);
            }
            if (node.PassBroadcast is { } b)
            {
                node.PassBroadcast = null;
                Unpend(b);
            }
        }
        Sweep(captured, swept);
        // What the pass hands out is the caller's from now on, and no slot of the pass holds it any more.
        foreach (var g in _targetGrads)
        {
            if (g is not null)
            {
                g.Version.EngineOwned = false;
                Interlocked.Decrement(ref g.Version.Pending);
            }
        }
        if (_leafGradList is not null)
        {
            _leafExclusive = new bool[_leafGradList.Count];
            for (int i = 0; i < _leafExclusive.Length; i++)
            {
                _leafExclusive[i] = HeldByOneSlotOnly(_leafGradList[i].Version);
            }
            foreach (var g in _leafGradList)
            {
                g.Version.EngineOwned = false;
                Interlocked.Decrement(ref g.Version.Pending);
            }
        }
    }

    /// <summary>Marks the storages made since <paramref name="from"/> as the pass's own, and frees what is dead among them and the slots emptied since the last sweep.</summary>
    private int Sweep(List<VersionCounter> captured, int from)
    {
        for (int i = from; i < captured.Count; i++)
        {
            var family = captured[i];
            family.EngineOwned = true;
            TryFree(family);
        }
        foreach (var family in _dropped)
        {
            TryFree(family);
        }
        _dropped.Clear();
        return captured.Count;
    }

    /// <summary>Adds g to the gradient of the output of <paramref name="fn"/> (a non-leaf), and to that output's target slot if it is one.</summary>
    private void AccumulateNode(Node fn, Tensor g)
    {
        if (_mapped)
        {
            if (_targetNodes is not null && _targetNodes.TryGetValue(fn, out int ti))
            {
                _targetGrads[ti] = Add(_targetGrads[ti], g);
            }
            _nodeGrads[fn] = Add(_nodeGrads.TryGetValue(fn, out var p) ? p : null, g);
            return;
        }
        // A node this pass did not claim lies below the floor: it leads to no target.
        if (!ReferenceEquals(fn.PassOwner, this))
        {
            return;
        }
        if (fn.PassTarget != 0)
        {
            _targetGrads[fn.PassTarget - 1] = Add(_targetGrads[fn.PassTarget - 1], g);
        }
        // Only a node whose backward runs needs its output's gradient.
        if (fn.PassNeeded)
        {
            if (fn.PassBroadcast is { } small)
            {
                // A deferred sum's gradient held the slot (see Defer): one broadcasting add, the bits of copy and add.
                DeferredBroadcastsOnThisThread++;
                fn.PassBroadcast = null;
                var sum = g + small;
                Pend(sum);
                Unpend(small);
                fn.PassGrad = sum;
                return;
            }
            fn.PassGrad = Add(fn.PassGrad, g);
        }
    }

    /// <summary>
    /// Keeps a sum's small gradient, the first to reach <paramref name="fn"/>'s output slot, until the next one arrives
    /// (<see cref="AccumulateNode"/>), which is then added to it broadcast in one pass (g + small), where the slot used
    /// to hold the broadcast copy and add g to it: the same bits (addition commutes), without the full-size copy. If
    /// none arrives before the node's backward takes the gradient (<see cref="TakeGrad"/>), it is broadcast then. Only
    /// into an empty slot of a node whose backward this pass runs and whose output is no target; false otherwise (the
    /// caller then broadcasts it at once).
    /// </summary>
    private bool Defer(Node fn, Tensor small, Shape shape)
    {
        if (_mapped || NoDeferredBroadcastsOnThisThread || !ReferenceEquals(fn.PassOwner, this) || !fn.PassNeeded || fn.PassTarget != 0
            || fn.PassGrad is not null || fn.PassBroadcast is not null)
        {
            return false;
        }
        Pend(small);
        fn.PassBroadcast = small;
        fn.PassBroadcastShape = shape;
        return true;
    }

    // Deferred sums' gradients a backward took into its kernel (TakeDeferredBroadcast), released once its gradients are in.
    private List<Tensor> _takenBroadcasts = null!;

    /// <summary>
    /// The deferred sum's gradient that waits in the gradient slot of input <paramref name="k"/> of
    /// <paramref name="node"/> (see <see cref="Defer"/>), when it has shape <paramref name="shape"/> and is the slot's only
    /// term: the slot gives it up, and the caller must add it, broadcast, into the gradient it returns for that input
    /// (a convolution takes it as its bias, the bits of the slot's own broadcasting add). Only in a pass that records
    /// nothing, for a node whose backward this pass is running; null otherwise (the slot adds it when the gradient
    /// arrives, as it would have).
    /// </summary>
    internal static Tensor? TakeDeferredBroadcast(Node node, int k, Shape shape) => t_running?.TakeDeferredBroadcastOf(node, k, shape);

    /// <summary>Tests only: how many deferred sums' gradients backwards on this thread took into their kernels (see <see cref="TakeDeferredBroadcast"/>).</summary>
    [ThreadStatic]
    internal static int TakenBroadcastsOnThisThread;

    private Tensor? TakeDeferredBroadcastOf(Node node, int k, Shape shape)
    {
        if (!_accumulateInPlace || _mapped || NoDeferredBroadcastsOnThisThread || !ReferenceEquals(node.PassOwner, this))
        {
            return null;
        }
        ref readonly var x = ref node.Inputs[k];
        if (!x.RequiresGrad || x.Fn is not { } fn || !ReferenceEquals(fn.PassOwner, this) || !fn.PassNeeded || fn.PassTarget != 0
            || fn.PassGrad is not null || fn.PassBroadcast is not { } small || small.Shape != shape || fn.PassBroadcastShape != x.Shape)
        {
            return null;
        }
        fn.PassBroadcast = null;
        _takenBroadcasts.Add(small);
        TakenBroadcastsOnThisThread++;
        return small;
    }

    /// <summary>Takes the gradient accumulated for the output of <paramref name="node"/> (a node of the order) if its backward is to run.</summary>
    private bool TakeGrad(Node node, out Tensor grad)
    {
        if (_mapped)
        {
            if (_needed.Contains(node) && _nodeGrads.Remove(node, out grad!))
            {
                return true;
            }
            grad = null!;
            return false;
        }
        grad = node.PassGrad!;
        node.PassGrad = null;
        if (node.PassBroadcast is { } small)
        {
            // The sum's gradient was the only one: broadcast now, as it would have been on arrival.
            node.PassBroadcast = null;
            grad = small.ExpandTo(node.PassBroadcastShape);
            Pend(grad);
            Unpend(small);
        }
        return grad is not null;
    }

    /// <summary>
    /// Makes this pass the owner of <paramref name="node"/>'s pass state (its fields start cleared),
    /// or confirms it already is; false when another running pass owns it.
    /// </summary>
    private bool Claim(Node node)
    {
        if (ReferenceEquals(node.PassOwner, this))
        {
            return true;
        }
        if (Interlocked.CompareExchange(ref node.PassOwner, this, null) is not null)
        {
            return false;
        }
        node.PassGrad = null;
        node.PassBroadcast = null;
        node.PassTarget = 0;
        node.PassVisited = false;
        node.PassNeeded = false;
        _claimed.Add(node);
        return true;
    }

    /// <summary>Claims the targets' nodes and marks their slots; false on a conflict.</summary>
    private bool ClaimTargets()
    {
        if (_targetList is not { } targets)
        {
            return true;
        }
        for (int i = 0; i < targets.Count; i++)
        {
            if (_slotOf![i] == i && targets[i].GradFn is { } fn)
            {
                if (!Claim(fn))
                {
                    return false;
                }
                if (fn.PassTarget == 0)
                {
                    fn.PassTarget = i + 1;
                }
            }
        }
        return true;
    }

    /// <summary>Gives up this pass's claims (at its end, or before it falls back to maps).</summary>
    private void ReleaseClaims()
    {
        foreach (var node in _claimed)
        {
            node.PassGrad = null;
            node.PassBroadcast = null;
            Volatile.Write(ref node.PassOwner, null);
        }
        _claimed.Clear();
    }

    /// <summary>True the first time the walk reaches <paramref name="node"/>; false after, and on a conflict (then <see cref="_conflict"/> is set).</summary>
    private bool FirstVisit(Node node)
    {
        if (_mapped)
        {
            return _visited.Add(node);
        }
        if (!Claim(node))
        {
            _conflict = true;
            return false;
        }
        if (node.PassVisited)
        {
            return false;
        }
        node.PassVisited = true;
        return true;
    }

    /// <summary>Whether the walk found that <paramref name="fn"/> is a target's node or leads to a target (<paramref name="fn"/> finished in the walk, or lies below the floor).</summary>
    private bool LeadsToTarget(Node fn) => _mapped
        ? _targetNodes!.ContainsKey(fn) || _needed.Contains(fn)
        : ReferenceEquals(fn.PassOwner, this) && (fn.PassTarget != 0 || fn.PassNeeded);

    /// <summary>Whether a slot's sum may be formed in its own storage (a pass that records nothing).</summary>
    private bool _accumulateInPlace;

    // Slot tensors a backward added its gradient into itself (TakeAccumulator), one entry per addition,
    // each consumed when that gradient comes back to its slot.
    private List<Tensor> _absorbed = null!;

    /// <summary>
    /// The tensor in the gradient slot of input <paramref name="k"/> of <paramref name="node"/>, when the
    /// node's backward may add its gradient for that input into it instead of returning a new tensor
    /// (which the slot would then add): the pass records nothing, and the slot alone holds its tensor,
    /// the pass's own (the test <see cref="Add"/> applies before summing in place). The caller must
    /// add into it and return it as that input's gradient. Null otherwise (then it returns a new tensor).
    /// </summary>
    internal static Tensor? TakeAccumulator(Node node, int k) => t_running?.TakeAccumulatorOf(node, k);

    /// <summary>The pass running on this thread (a nested pass while it runs), for <see cref="TakeAccumulator"/>.</summary>
    [ThreadStatic]
    private static Engine? t_running;

    /// <summary>
    /// Tests only: while set on a thread, <see cref="TakeAccumulator"/> hands out no slot there, so every backward
    /// returns a new tensor (the slots still add them in place), the reference the accumulating kernels are compared with.
    /// </summary>
    [ThreadStatic]
    internal static bool NoAccumulatorsOnThisThread;

    /// <summary>Tests only: while set on a thread, a sum's gradient is broadcast as it arrives there, never deferred (see <see cref="Defer"/>).</summary>
    [ThreadStatic]
    internal static bool NoDeferredBroadcastsOnThisThread;

    /// <summary>Tests only: how many deferred sums' gradients passes on this thread have added in (see <see cref="Defer"/>).</summary>
    [ThreadStatic]
    internal static int DeferredBroadcastsOnThisThread;

    private Tensor? TakeAccumulatorOf(Node node, int k)
    {
        // Only for a node whose backward this pass is running: a node another pass holds (this pass then
        // keeps its state in maps), or one reached by a pass on another thread, is never this pass's.
        if (!_accumulateInPlace || _mapped || NoAccumulatorsOnThisThread || !ReferenceEquals(node.PassOwner, this))
        {
            return null;
        }
        ref readonly var x = ref node.Inputs[k];
        if (!x.RequiresGrad)
        {
            return null;
        }
        Tensor? slot;
        if (x.Leaf is { } leaf)
        {
            if (_targets is not null)
            {
                slot = _targets.TryGetValue(leaf, out int ti) ? _targetGrads[ti] : null;
            }
            else
            {
                slot = LeafSlot(leaf) is int li and >= 0 ? _leafGradList![li] : null;
            }
        }
        else if (x.Fn is { } fn && ReferenceEquals(fn.PassOwner, this) && fn.PassNeeded && fn.PassTarget == 0)
        {
            slot = fn.PassGrad;
        }
        else
        {
            return null;
        }
        if (slot is null || !HeldByOneSlotOnly(slot.Version)
            || slot.Shape != x.Shape || slot.DType != x.DType || !ReferenceEquals(slot.Backend, x.Backend))
        {
            return null;
        }
        _absorbed.Add(slot);
        return slot;
    }

    /// <summary>The pass's own storage (never handed out), saved by no node, live, and held by exactly one gradient slot: its slot may write into it.</summary>
    private static bool HeldByOneSlotOnly(VersionCounter family) =>
        family is { EngineOwned: true, Saved: 0, Pending: 1, ReleasedBy: null };

    private bool TakeAbsorbed(Tensor t)
    {
        var absorbed = _absorbed;
        for (int i = absorbed.Count - 1; i >= 0; i--)
        {
            if (ReferenceEquals(absorbed[i], t))
            {
                absorbed.RemoveAt(i);
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// The new content of a gradient slot that held <paramref name="prev"/>: prev + g, or g; the slot's
    /// hold moves to it. When the pass records nothing and prev is the pass's own temporary that this
    /// slot alone holds (no node saves it, no other slot holds it or a view of it, it was never handed
    /// out, and g is not of its family), the sum is written into prev's storage, as PyTorch accumulates
    /// in place: the same bits, one allocation fewer.
    /// </summary>
    private Tensor Add(Tensor? prev, Tensor g)
    {
        if (prev is not null && ReferenceEquals(prev, g) && _absorbed.Count > 0 && TakeAbsorbed(g))
        {
            // The backward already added its gradient into the slot's own tensor.
            return prev;
        }
        if (prev is not null && _accumulateInPlace && prev.Version is var family && HeldByOneSlotOnly(family)
            && !ReferenceEquals(family, g.Version) && prev.DType == g.DType && prev.Device == g.Device)
        {
            prev.Backend.Binary(BinaryOp.Add, prev.Storage, prev.Shape, g.Storage, g.Shape, prev.Storage, prev.Shape);
            family.Value++;
            return prev;
        }
        var sum = prev is null ? g : prev + g;
        Pend(sum);
        if (prev is not null)
        {
            Unpend(prev);
        }
        return sum;
    }

    private void Accumulate(Tensor x, Tensor g)
    {
        if (_targets is not null && _targets.TryGetValue(x, out int ti))
        {
            _targetGrads[ti] = Add(_targetGrads[ti], g);
        }
        if (x.GradFn is { } fn)
        {
            if (_mapped)
            {
                _nodeGrads[fn] = Add(_nodeGrads.TryGetValue(fn, out var prev) ? prev : null, g);
            }
            else if (fn.PassNeeded)
            {
                fn.PassGrad = Add(fn.PassGrad, g);
            }
        }
        else if (_leafGradList is not null && x.RequiresGrad)
        {
            int li = LeafSlot(x);
            if (li >= 0)
            {
                _leafGradList[li] = Add(_leafGradList[li], g);
            }
            else
            {
                _leafGradList.Add(Add(null, g));
                _leafOrder!.Add(x);
                if (_leafIndex is not null)
                {
                    _leafIndex.Add(x, _leafOrder.Count - 1);
                }
                else if (_leafOrder.Count > LeafScanLimit)
                {
                    _leafIndex = new(ReferenceEqualityComparer.Instance);
                    for (int i = 0; i < _leafOrder.Count; i++)
                    {
                        _leafIndex.Add(_leafOrder[i], i);
                    }
                }
            }
        }
    }

    /// <summary>The slot of a leaf in a pass without targets, or -1 before its first gradient.</summary>
    private int LeafSlot(Tensor leaf)
    {
        if (_leafIndex is not null)
        {
            return _leafIndex.TryGetValue(leaf, out int i) ? i : -1;
        }
        var order = _leafOrder!;
        for (int i = 0; i < order.Count; i++)
        {
            if (ReferenceEquals(order[i], leaf))
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>
    /// Reverse post-order of the nodes reachable from the outputs (into <c>scratch.Post</c>), marking
    /// those that lead to a target; false when a node belongs to another running pass (nothing is computed yet).
    /// </summary>
    private bool TopologicalOrder(IReadOnlyList<Tensor> outputs, Scratch scratch)
    {
        var post = scratch.Post;
        var stack = scratch.Stack;
        foreach (var o in outputs)
        {
            if (o.GradFn is null || !FirstVisit(o.GradFn))
            {
                if (_conflict)
                {
                    stack.Clear();
                    return false;
                }
                continue;
            }
            stack.Push((o.GradFn, 0));
            while (stack.Count > 0)
            {
                var (node, next) = stack.Pop();
                var inputs = node.Inputs;
                if (next < inputs.Length)
                {
                    stack.Push((node, next + 1));
                    var child = inputs[next].Fn;
                    if (child is not null && child.TopologicalNr >= _floor && FirstVisit(child))
                    {
                        stack.Push((child, 0));
                    }
                    else if (_conflict)
                    {
                        stack.Clear();
                        return false;
                    }
                    continue;
                }
                post.Add(node);
                bool need = _targetList is null;
                if (!need)
                {
                    foreach (ref readonly var x in inputs.AsSpan())
                    {
                        if ((x.Leaf is { } leaf && _targets!.ContainsKey(leaf)) || (x.Fn is { } f && LeadsToTarget(f)))
                        {
                            need = true;
                            break;
                        }
                    }
                }
                if (need)
                {
                    if (_mapped)
                    {
                        _needed.Add(node);
                    }
                    else
                    {
                        node.PassNeeded = true;
                    }
                }
            }
        }
        post.Reverse();
        return true;
    }

    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>The collections of one pass, reused by the next pass on the same thread.</summary>
    private sealed class Scratch
    {
        public List<Node> Post { get; } = [];

        // The maps of a pass that could not claim its nodes (compared by reference: rare, so the
        // object hash code's first-use cost does not matter).
        public HashSet<Node> Visited { get; } = new(ReferenceEqualityComparer.Instance);

        public HashSet<Node> Needed { get; } = new(ReferenceEqualityComparer.Instance);

        /// <summary>The nodes the pass claimed.</summary>
        public List<Node> Claimed { get; } = [];

        /// <summary>Slot tensors a backward added into (see TakeAccumulator).</summary>
        public List<Tensor> Absorbed { get; } = [];

        /// <summary>Deferred sums' gradients a backward took (see TakeDeferredBroadcast).</summary>
        public List<Tensor> TakenBroadcasts { get; } = [];

        public Stack<(Node Node, int Next)> Stack { get; } = new();

        public Dictionary<Node, Tensor> NodeGrads { get; } = new(ReferenceEqualityComparer.Instance);

        /// <summary>The storages the pass made (see <see cref="t_capture"/>).</summary>
        public List<VersionCounter> Captured { get; } = [];

        /// <summary>The families of the gradient slots emptied since the last sweep.</summary>
        public List<VersionCounter> Dropped { get; } = [];

        public Dictionary<Tensor, int> Targets { get; } = new(ReferenceEqualityComparer.Instance);

        public Dictionary<Node, int> TargetNodes { get; } = new(ReferenceEqualityComparer.Instance);

        public void Clear()
        {
            Captured.Clear();
            Dropped.Clear();
            Targets.Clear();
            TargetNodes.Clear();
            Post.Clear();
            Visited.Clear();
            Claimed.Clear();
            Absorbed.Clear();
            TakenBroadcasts.Clear();
            Needed.Clear();
            Stack.Clear();
            NodeGrads.Clear();
        }
    }
}
