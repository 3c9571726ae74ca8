namespace Higher.Nn;

/// <summary>
/// A module's learnable tensor, read through one indirection: <see cref="Value"/> is the tensor
/// bound to this parameter on the current thread by a functional call (fast weights), or else
/// <see cref="Data"/>. Layers read <see cref="Value"/>, so any module, a user's own included, can
/// run with supplied weights without being mutated, from several threads at once.
/// </summary>
public sealed class Parameter
{
    private Tensor _data;

    /// <summary>Wraps <paramref name="data"/> as a leaf (detached) that requires grad unless told otherwise.</summary>
    public Parameter(Tensor data, bool requiresGrad = true)
    {
        ArgumentNullException.ThrowIfNull(data);
        _data = Leaf(data, requiresGrad);
    }

    /// <summary>
    /// The module's own tensor: a leaf. Setting it (as <see cref="Module.To(DType)"/> does) puts a new
    /// tensor in its place; an optimizer still holding the old one refuses to step it.
    /// </summary>
    public Tensor Data
    {
        get => _data;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            var next = Leaf(value, _data.RequiresGrad);
            if (!ReferenceEquals(next, _data))
            {
                ReplacedTensors.Mark(_data, next);
            }
            _data = next;
            Module.StructureChanged();
        }
    }

    /// <summary>The tensor a forward pass should use now: the bound fast weight on this thread, else <see cref="Data"/>.</summary>
    public Tensor Value => Binding.TryResolve(this, out var bound) ? bound : _data;

    /// <summary>Whether the optimizer should train it (frozen parameters pass through functional updates).</summary>
    public bool RequiresGrad
    {
        get => _data.RequiresGrad;
        set => _data.RequiresGrad = value;
    }

    /// <summary>Gradient accumulated in <see cref="Data"/>.</summary>
    public Tensor? Grad
    {
        get => _data.Grad;
        set => _data.Grad = value;
    }

    /// <summary>The shape of <see cref="Data"/>.</summary>
    public Shape Shape => _data.Shape;

    private static Tensor Leaf(Tensor t, bool requiresGrad)
    {
        var leaf = t.IsLeaf ? t : t.Detach();
        leaf.RequiresGrad = requiresGrad && leaf.DType.IsFloatingPoint();
        return leaf;
    }

    /// <summary>Shows the data.</summary>
    public override string ToString() => $"Parameter({_data})";
}

/// <summary>
/// A module's non-learnable state (BatchNorm running statistics), read and written through the
/// same thread-local indirection as <see cref="Parameter"/>: inside a functional call the writes
/// go to the functional copy's own buffers, never to the module's.
/// </summary>
public sealed class ModuleBuffer
{
    private Tensor? _data;

    /// <summary>Wraps <paramref name="data"/> (may be null: an absent buffer).</summary>
    public ModuleBuffer(Tensor? data, bool persistent = true)
    {
        _data = data?.Detach();
        Persistent = persistent;
    }

    /// <summary>Whether the buffer is part of the state dictionary.</summary>
    public bool Persistent { get; }

    /// <summary>The module's own tensor.</summary>
    public Tensor? Data
    {
        get => _data;
        set => Assign(value?.Detach());
    }

    /// <summary>The buffer in effect on this thread: the functional copy's when bound, else <see cref="Data"/>. Setting writes there.</summary>
    public Tensor? Value
    {
        get => Binding.TryResolve(this, out var bound) ? bound : _data;
        set
        {
            if (!Binding.TrySet(this, value))
            {
                Assign(value);
            }
        }
    }

    // A buffer that becomes absent or present changes its module's NamedBufferHandles (which lists present ones only).
    private void Assign(Tensor? value)
    {
        bool changes = (_data is null) != (value is null);
        _data = value;
        if (changes)
        {
            Module.StructureChanged();
        }
    }
}

/// <summary>
/// Tensors that were a parameter's data until <see cref="Parameter.Data"/> was set to another tensor
/// (a module moved with To(...), or weights replaced by hand). An optimizer built before the
/// replacement holds the old tensor and would step it, silently, while the model trains on the new
/// one; it asks here and refuses instead. Weak keys: nothing is kept alive.
/// </summary>
internal static class ReplacedTensors
{
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Tensor, string> Table = [];

    public static void Mark(Tensor old, Tensor replacement) =>
        Table.AddOrUpdate(old, $"{replacement.Shape} {replacement.DType.Name()} on {replacement.Device}");

    /// <summary>True (with a description of the replacement) when <paramref name="t"/> is no longer any parameter's data.</summary>
    public static bool TryGet(Tensor t, out string replacement) => Table.TryGetValue(t, out replacement!);
}
