using System.Numerics;

namespace Higher.Tape;

/// <summary>
/// Which tensors a backward reads: inputs by position and the op's output. A node keeps exactly
/// these (plus its auxiliary tensors, such as indices and masks, which are always kept), checks
/// their versions before the backward runs, and drops them when the graph is freed. A backward can
/// read no other values: <see cref="Node.Input"/> and <see cref="Node.Output"/> refuse what was not
/// declared, so what is saved and what is read cannot drift apart.
/// </summary>
[Flags]
internal enum Saves : byte
{
    /// <summary>The backward reads only the incoming gradient (and shapes).</summary>
    None = 0,
    /// <summary>Input 0.</summary>
    Input0 = 1 << 0,
    /// <summary>Input 1.</summary>
    Input1 = 1 << 1,
    /// <summary>Input 2.</summary>
    Input2 = 1 << 2,
    /// <summary>Inputs 0 and 1.</summary>
    Inputs01 = Input0 | Input1,
    /// <summary>The op's output.</summary>
    Output = 1 << 7,
}

/// <summary>
/// What a node keeps of one input: the node that produced it (the graph's edge), the tensor itself
/// only when it is a leaf that requires grad (its gradient is accumulated by identity), and its
/// metadata. Not the input's values: an intermediate that no backward saves can die as soon as the
/// forward is done with it, as in PyTorch, instead of living until the backward.
/// </summary>
internal readonly struct Edge
{
    public Edge(Tensor x)
    {
        Fn = x.GradFn;
        Leaf = x.GradFn is null && x.RequiresGrad ? x : null;
        Shape = x.Shape;
        DType = x.DType;
        Backend = x.Backend;
        RequiresGrad = x.RequiresGrad;
        Name = x.Name;
    }

    /// <summary>The node that produced the input; null for a leaf.</summary>
    public Node? Fn { get; }

    /// <summary>The input itself when it is a leaf that requires grad; null otherwise.</summary>
    public Tensor? Leaf { get; }

    /// <summary>The input's shape.</summary>
    public Shape Shape { get; }

    /// <summary>The input's dtype.</summary>
    public DType DType { get; }

    /// <summary>The input's backend (and so its device).</summary>
    public IBackend Backend { get; }

    /// <summary>Whether the input required grad when the op was recorded.</summary>
    public bool RequiresGrad { get; }

    /// <summary>The input's name, for messages.</summary>
    public string? Name { get; }

    /// <summary>"'name' [2, 3] float32" as <see cref="Tensor"/> describes itself.</summary>
    public string Describe() => Name is null ? $"{Shape} {DType.Name()}" : $"'{Name}' {Shape} {DType.Name()}";
}

/// <summary>The gradients of an op's inputs given its output's gradient, written in differentiable ops (null: no gradient needed).</summary>
internal delegate GradList BackwardFn<TAttr>(Node node, in TAttr attr, Tensor grad);

/// <summary>
/// The gradients a backward returns, one per input in order: up to three inline, so that a row's
/// <c>[ga, gb]</c> is built from a span on the stack (no array per node of every backward pass);
/// more, or an array a backward made itself, are kept as that array.
/// </summary>
[System.Runtime.CompilerServices.CollectionBuilder(typeof(GradList), nameof(Create))]
internal readonly struct GradList
{
    private readonly Tensor? _g0, _g1, _g2;
    private readonly Tensor?[]? _more;

    private GradList(ReadOnlySpan<Tensor?> grads)
    {
        Length = grads.Length;
        if (grads.Length > 3)
        {
            _more = grads.ToArray();
            return;
        }
        _g0 = grads.Length > 0 ? grads[0] : null;
        _g1 = grads.Length > 1 ? grads[1] : null;
        _g2 = grads.Length > 2 ? grads[2] : null;
    }

    private GradList(Tensor?[] grads)
    {
        Length = grads.Length;
        _more = grads;
    }

    /// <summary>Number of gradients (the node's input count).</summary>
    public int Length { get; }

    /// <summary>The gradient of input <paramref name="i"/> (null: none).</summary>
    public Tensor? this[int i]
    {
        get
        {
            if ((uint)i >= (uint)Length)
            {
                throw new ArgumentOutOfRangeException(nameof(i), i, $"Gradient {i} of a backward that returned {Length}.");
            }
            return _more is { } more ? more[i] : i switch { 0 => _g0, 1 => _g1, _ => _g2 };
        }
    }

    /// <summary>Builds the list of a collection expression.</summary>
    public static GradList Create(ReadOnlySpan<Tensor?> grads) => new(grads);

    /// <summary>A backward's own array of gradients (kept, not copied).</summary>
    public static implicit operator GradList(Tensor?[] grads) => new(grads ?? throw new ArgumentNullException(nameof(grads)));

    /// <summary>The gradients in order (for the collection-expression pattern).</summary>
    public Enumerator GetEnumerator() => new(this);

    /// <summary>Enumerates a <see cref="GradList"/>.</summary>
    public struct Enumerator(GradList list)
    {
        private int _i = -1;

        public readonly Tensor? Current => list[_i];

        public bool MoveNext() => ++_i < list.Length;
    }
}

/// <summary>
/// One row of the derivatives table (see <see cref="Derivatives"/>): an op's name, what its backward
/// saves, and the backward itself. <typeparamref name="TAttr"/> holds the op's non-tensor arguments
/// (scalars, axes, shapes).
/// </summary>
internal sealed class Derivative<TAttr>(string name, Saves saves, BackwardFn<TAttr> backward)
{
    /// <summary>The node name users see in <see cref="Tensor.GradFnName"/> and messages ("ExpBackward").</summary>
    public string NodeName { get; } = name + "Backward";

    /// <summary>What the backward reads.</summary>
    public Saves Saves { get; } = saves;

    /// <summary>The backward.</summary>
    public BackwardFn<TAttr> Backward { get; } = backward;

    /// <summary>
    /// Records <paramref name="output"/> as produced by this op from <paramref name="inputs"/>. Spans, so
    /// that a call site's <c>[a, b]</c> lives on the stack: the node copies what it keeps.
    /// </summary>
    public void Record(Tensor output, in TAttr attr, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> aux = default)
    {
        var node = new Node<TAttr>(this, attr, inputs, output, aux);
        if (AnomalyScope.On)
        {
            node.ForwardStack = Environment.StackTrace;
            long bad = AnomalyScope.FirstNonFinite(output);
            if (bad >= 0)
            {
                throw new AnomalyException(
                    $"Anomaly: the forward of {NodeName[..^"Backward".Length]} produced {output.ToDoubleArray()[bad]} at element {bad} of its {output.Describe()} output, from {AnomalyScope.Operands(inputs.ToArray())}.");
            }
        }
        output.AttachGradFn(node);
    }
}

/// <summary>
/// One recorded op on the tape. Its backward is written in differentiable <see cref="Tensor"/> ops
/// only, so running it with grad mode on records the gradient's own graph: higher derivatives
/// come by construction. The node holds the tensors its <see cref="Saves"/> declare, with the
/// versions they had when saved.
/// </summary>
internal abstract class Node
{
    // Each saved tensor with the version it had when saved: one array per node, not two.
    private (Tensor Tensor, int Version)[]? _saved;
    private readonly Saves _saves;
    private bool _released;

    protected Node(Saves saves, ReadOnlySpan<Tensor> inputs, Tensor output, ReadOnlySpan<Tensor> aux)
    {
        var edges = new Edge[inputs.Length];
        int depth = 0;
        for (int i = 0; i < inputs.Length; i++)
        {
            edges[i] = new Edge(inputs[i]);
            if (edges[i].Fn is { } fn && fn.TopologicalNr >= depth)
            {
                depth = fn.TopologicalNr + 1;
            }
        }
        Inputs = edges;
        TopologicalNr = depth;
        _saves = saves;
        int declared = BitOperations.PopCount((uint)saves);
        int count = declared + aux.Length;
        if (count == 0)
        {
            return;
        }
        var saved = new (Tensor, int)[count];
        int k = 0;
        for (int i = 0; i < inputs.Length && i < 7; i++)
        {
            if (((int)saves & (1 << i)) != 0)
            {
                saved[k++] = (inputs[i], inputs[i].Version.Value);
            }
        }
        if ((saves & Saves.Output) != 0)
        {
            saved[k++] = (output, output.Version.Value);
        }
        foreach (var t in aux)
        {
            saved[k++] = (t, t.Version.Value);
        }
        foreach (var (t, _) in saved)
        {
            Interlocked.Increment(ref t.Version.Saved);
        }
        _saved = saved;
    }

    /// <summary>The op's inputs as edges, in order; gradients are returned in the same order.</summary>
    internal Edge[] Inputs { get; }

    /// <summary>
    /// 0 for a node whose inputs are all leaves, else one more than the largest among its inputs'
    /// nodes (PyTorch's topological_nr): every node a node can reach has a smaller number, so a
    /// backward pass towards given tensors never walks below the smallest number among theirs.
    /// </summary>
    internal int TopologicalNr { get; }

    // The state of the backward pass that claimed this node (Engine.Claim), in the node itself so that
    // a pass hashes nothing: the owner (null while no pass holds the node), the gradient accumulated
    // for the output, the target slot + 1 (0: not a target's node), and the walk's two marks.
    internal Tape.Engine? PassOwner;
    internal Tensor? PassGrad;
    // A sum's gradient that reached the empty slot first, kept small ([1, C, 1, 1] and the like) with the output's shape
    // to broadcast it to: the next term arriving is added to it broadcast, or it is broadcast alone when the node's
    // backward takes its gradient (Engine.Defer).
    internal Tensor? PassBroadcast;
    internal Shape PassBroadcastShape;
    internal int PassTarget;
    internal bool PassVisited;
    internal bool PassNeeded;

    /// <summary>Number of inputs.</summary>
    internal int InputCount => Inputs.Length;

    /// <summary>Where the forward was called, kept only under anomaly detection.</summary>
    internal string? ForwardStack { get; set; }

    /// <summary>Node name for messages and <see cref="Tensor.GradFnName"/>.</summary>
    internal abstract string Name { get; }

    /// <summary>Whether this node was recorded by the derivative <paramref name="op"/> (nodes of other kinds never are).</summary>
    internal virtual bool Is(object op) => false;

    /// <summary>True if input <paramref name="i"/> needs a gradient.</summary>
    internal bool NeedsGrad(int i) => Inputs[i].RequiresGrad;

    /// <summary>Shape of input <paramref name="i"/> (always available: shapes are not values).</summary>
    internal Shape InputShape(int i) => Inputs[i].Shape;

    /// <summary>Dtype of input <paramref name="i"/>.</summary>
    internal DType InputDType(int i) => Inputs[i].DType;

    /// <summary>Device of input <paramref name="i"/>.</summary>
    internal Device InputDevice(int i) => Inputs[i].Backend.Device;

    /// <summary>
    /// The running pass's gradient slot of input <paramref name="i"/>, for a backward that adds its
    /// gradient for that input into it (β = 1) and returns it, instead of a new tensor the slot would
    /// add: only in a pass that records nothing, while the slot alone holds a tensor of the pass's own
    /// (see Engine.TakeAccumulator); null otherwise. A caller that gets one must use it.
    /// </summary>
    internal Tensor? TakeAccumulator(int i) => Tape.Engine.TakeAccumulator(this, i);

    /// <summary>Zeros of input <paramref name="i"/>'s shape, dtype and device (reads no values).</summary>
    internal Tensor ZerosLikeInput(int i) => Tensor.ZerosOn(Inputs[i].Backend, Inputs[i].DType, Inputs[i].Shape);

    /// <summary>The saved value of input <paramref name="i"/>; throws unless the op's row declares it saved.</summary>
    internal Tensor Input(int i)
    {
        if (i >= 7 || ((int)_saves & (1 << i)) == 0)
        {
            throw new InvalidOperationException($"Internal error: the backward of {Name} reads input {i}, which its row of the derivatives table does not save.");
        }
        return SavedAt(BitOperations.PopCount((uint)_saves & ((1u << i) - 1)));
    }

    /// <summary>The saved output; throws unless the op's row declares it saved.</summary>
    internal Tensor Output
    {
        get
        {
            if ((_saves & Saves.Output) == 0)
            {
                throw new InvalidOperationException($"Internal error: the backward of {Name} reads its output, which its row of the derivatives table does not save.");
            }
            return SavedAt(BitOperations.PopCount((uint)_saves & 0x7F));
        }
    }

    /// <summary>Auxiliary tensor <paramref name="i"/> (indices, masks) given when the op was recorded.</summary>
    internal Tensor Aux(int i) => SavedAt(BitOperations.PopCount((uint)_saves) + i);

    private Tensor SavedAt(int k) => _saved![k].Tensor;

    /// <summary>Gradients of the op's inputs given the gradient of its output (null where none is needed).</summary>
    protected abstract GradList Backward(Tensor gradOutput);

    internal GradList Apply(Tensor gradOutput)
    {
        if (_released)
        {
            throw new InvalidOperationException(
                $"Trying to backward through {Name} a second time, after its saved tensors were freed. Pass retainGraph: true (or createGraph: true) to the first backward.");
        }
        if (_saved is not null)
        {
            foreach (var (t, version) in _saved)
            {
                if (t.Version.Value != version)
                {
                    throw new InvalidOperationException(
                        $"A {t.Describe()} tensor needed by {Name} for its gradient was modified by an in-place operation (version {t.Version.Value}, saved at version {version}).");
                }
            }
        }
        var grads = Backward(gradOutput);
        if (grads.Length != Inputs.Length)
        {
            throw new InvalidOperationException($"Internal error: the backward of {Name} returned {grads.Length} gradients for {Inputs.Length} inputs.");
        }
        if (AnomalyScope.On)
        {
            for (int i = 0; i < grads.Length; i++)
            {
                if (grads[i] is { } gi && AnomalyScope.FirstNonFinite(gi) is var bad and >= 0)
                {
                    throw new AnomalyException(
                        $"Anomaly: {Name} returned {gi.ToDoubleArray()[bad]} at element {bad} of the {gi.Describe()} gradient of input {i} ({Inputs[i].Describe()}), " +
                        $"from an incoming gradient {gradOutput.Describe()}. Its forward was called at:\n{ForwardStack ?? "(recorded before anomaly detection was on)"}");
                }
            }
        }
        return grads;
    }

    /// <summary>Frees what the backward needed, so the graph can be collected; a later backward fails clearly.</summary>
    internal void Release()
    {
        if (_released)
        {
            return;
        }
        _released = true;
        var saved = _saved;
        _saved = null;
        if (saved is not null)
        {
            foreach (var (t, _) in saved)
            {
                Engine.Unsave(t.Version);
            }
        }
    }
}

/// <summary>A node of one row of the derivatives table, with the op's arguments.</summary>
internal sealed class Node<TAttr> : Node
{
    private readonly Derivative<TAttr> _op;
    private readonly TAttr _attr;

    public Node(Derivative<TAttr> op, in TAttr attr, ReadOnlySpan<Tensor> inputs, Tensor output, ReadOnlySpan<Tensor> aux) : base(op.Saves, inputs, output, aux)
    {
        _op = op;
        _attr = attr;
    }

    internal override string Name => _op.NodeName;

    internal override bool Is(object op) => ReferenceEquals(_op, op);

    protected override GradList Backward(Tensor gradOutput) => _op.Backward(this, _attr, gradOutput);
}
