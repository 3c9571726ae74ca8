using System.Globalization;
using System.Text;
using Higher.Tape;

namespace Higher;

/// <summary>
/// An n-dimensional array on a device, with reverse-mode autograd of any order. Tensors are
/// immutable values except for the explicit in-place methods (suffix <c>InPlace</c>), which exist for
/// optimizer state and buffers and bump a version counter that the tape checks.
/// </summary>
public sealed partial class Tensor
{
    private readonly IStorage _storage;
    private bool _requiresGrad;
    private Tensor? _grad;

    internal Tensor(IStorage storage, Shape shape, IBackend backend, Node? gradFn = null, VersionCounter? version = null)
    {
        _storage = storage;
        Shape = shape;
        Backend = backend;
        GradFn = gradFn;
        // A new storage starts a family (shared by every view of it); the current scope, if any, governs it.
        Version = version ?? TensorScope.Adopt(storage);
    }

    /// <summary>
    /// The device buffer (contiguous, row-major). Views made by <see cref="Reshape(int[])"/> share it.
    /// Throws <see cref="ObjectDisposedException"/>, naming this tensor, once a <see cref="TensorScope"/>
    /// released the storage: every read of the data goes through here.
    /// </summary>
    public IStorage Storage
    {
        get
        {
            if (Version.ReleasedBy is not null)
            {
                throw ReleasedError();
            }
            return _storage;
        }
    }

    /// <summary>True once a <see cref="TensorScope"/> released this tensor's storage (this tensor or a view of the same storage can no longer be used).</summary>
    public bool IsReleased => Version.ReleasedBy is not null;

    /// <summary>The backend that owns <see cref="Storage"/>.</summary>
    public IBackend Backend { get; }

    /// <summary>Dimensions.</summary>
    public Shape Shape { get; }

    /// <summary>Element type.</summary>
    public DType DType => _storage.DType;

    /// <summary>Device of the storage.</summary>
    public Device Device => Backend.Device;

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Rank;

    /// <summary>Number of elements.</summary>
    public long Numel => Shape.Numel;

    /// <summary>Size of dimension <paramref name="axis"/> (negative counts from the end).</summary>
    public int Size(int axis) => Shape[axis];

    /// <summary>The node of the tape that produced this tensor; null for leaves.</summary>
    internal Node? GradFn { get; private set; }

    /// <summary>Shared with every view of the same storage; bumped by each in-place change.</summary>
    internal VersionCounter Version { get; }

    /// <summary>True if no recorded op produced this tensor.</summary>
    public bool IsLeaf => GradFn is null;

    /// <summary>Name of the op that produced this tensor, or null for leaves.</summary>
    public string? GradFnName => GradFn?.Name;

    /// <summary>
    /// Whether gradients flow to or through this tensor. Settable on leaves only (as in PyTorch);
    /// a non-leaf requires grad exactly when it was produced by a recorded op.
    /// </summary>
    public bool RequiresGrad
    {
        get => _requiresGrad || GradFn is not null;
        set
        {
            if (GradFn is not null)
            {
                if (!value)
                {
                    throw new InvalidOperationException(
                        $"RequiresGrad can only be cleared on leaf tensors; this {Shape} tensor was produced by {GradFn.Name}. Use Detach() instead.");
                }
                return;
            }
            if (value && !DType.IsFloatingPoint())
            {
                throw new ArgumentException($"Only floating-point tensors can require gradients; this {Shape} tensor is {DType.Name()}.");
            }
            _requiresGrad = value;
        }
    }

    /// <summary>
    /// Accumulated gradient of a leaf after <see cref="Backward"/>; null until then. A gradient set
    /// by hand must have this tensor's shape, dtype and device (Backward adds into it, and an
    /// optimizer reads it as the gradient of exactly this tensor). A gradient assigned to a tensor
    /// that outlives the scope the gradient was made in survives that scope with it.
    /// Backward without createGraph adds into the Grad tensor it made itself in place while no one
    /// has read or assigned this property since (PyTorch's AccumulateGrad, without allocating); once
    /// read, the tensor is the reader's and the next Backward puts the sum in a new tensor.
    /// </summary>
    public Tensor? Grad
    {
        get
        {
            // Once read, the gradient is the reader's: a later Backward adds into a new tensor, never into this one.
            GradAccumulates = false;
            return _grad;
        }
        set
        {
            if (value is not null && (value.Shape != Shape || value.DType != DType || value.Device != Device))
            {
                throw new ArgumentException(
                    $"Grad: the gradient assigned to a {Describe()} tensor on {Device} must match it; got {value.Describe()} on {value.Device}.", nameof(value));
            }
            _grad = value;
            GradAccumulates = false;
            if (value is not null)
            {
                TensorScope.OnGradAssigned(this, value);
            }
        }
    }

    /// <summary>
    /// True while <see cref="Grad"/> is a tensor that <see cref="Autograd.Backward"/> made for this leaf and
    /// that no one else has seen: a later Backward without createGraph adds into it in place, as PyTorch's
    /// AccumulateGrad does, without allocating. Reading or assigning <see cref="Grad"/> clears it, so a
    /// gradient tensor anyone holds (an optimizer's state, a caller's variable) is never written.
    /// </summary>
    internal bool GradAccumulates { get; set; }

    /// <summary>The gradient, read without handing it out (see <see cref="GradAccumulates"/>): for the engine and scopes.</summary>
    internal Tensor? PeekGrad => _grad;

    /// <summary>Optional name shown by <see cref="ToString"/> and in error messages.</summary>
    public string? Name { get; set; }

    /// <summary>Sets <see cref="RequiresGrad"/> and returns this tensor, for fluent construction.</summary>
    public Tensor WithRequiresGrad(bool value = true)
    {
        RequiresGrad = value;
        return this;
    }

    /// <summary>
    /// Opens a <see cref="TensorScope"/>: until it is disposed, the storages of tensors created on this
    /// thread and async flow are released at its end unless they escape it (see <see cref="TensorScope"/>).
    /// <code>using var scope = Tensor.NewScope();</code>
    /// </summary>
    public static TensorScope NewScope(string? name = null) => TensorScope.Begin(name);

    /// <summary>
    /// Frees the storage of an op's own intermediate: for a tensor a composite made and never handed out
    /// (no view of it escaped), so nothing else can read it. Now when no tape node saves it; otherwise
    /// the engine frees it when the last node saving it is released, as it does a backward pass's own
    /// tensors (see <see cref="VersionCounter.EngineOwned"/>).
    /// </summary>
    internal void FreeIntermediate(string by)
    {
        var family = Version;
        if (family.Unheld)
        {
            TensorScope.ReleaseNow(family, by);
        }
        else if (family.ReleasedBy is null)
        {
            family.Owner = by;
            family.EngineOwned = true;
        }
    }

    /// <summary>
    /// Hands this tensor's storage (shared with its views) to <paramref name="scope"/>, which releases it at its end;
    /// null hands it to the garbage collector. Returns this tensor.
    /// </summary>
    public Tensor MoveTo(TensorScope? scope)
    {
        TensorScope.MoveFamily(Version, scope);
        return this;
    }

    /// <summary>A tensor sharing this storage (and version counter) but cut from the tape.</summary>
    public Tensor Detach() => new(Storage, Shape, Backend, null, Version);

    /// <summary>Runs backward from this tensor; see <see cref="Autograd.Backward"/>.</summary>
    public void Backward(Tensor? gradient = null, bool createGraph = false, bool? retainGraph = null) =>
        Autograd.Backward([this], gradient is null ? null : [gradient], createGraph, retainGraph);

    internal static Tensor Make(IStorage storage, Shape shape, IBackend backend) => new(storage, shape, backend);

    internal void AttachGradFn(Node node) => GradFn = node;

    private ObjectDisposedException ReleasedError() => new(nameof(Tensor),
        $"This {Describe()} tensor on {Backend.Device} was released by {Version.ReleasedBy} when the scope ended (its memory was reused): " +
        "keep it with scope.Keep(tensor) or tensor.MoveTo(outerScope) to use it after the scope.");

    internal string Describe() => Name is null ? $"{Shape} {DType.Name()}" : $"'{Name}' {Shape} {DType.Name()}";

    // ------------------------------------------------------------------ host transfer

    /// <summary>Copies the elements to a new float array (converting from any dtype), row-major.</summary>
    public float[] ToFloatArray() => DType == DType.Float32 ? Download<float>() : DownloadAs<float>(DType.Float32);

    /// <summary>Copies the elements to a new double array (converting from any dtype), row-major.</summary>
    public double[] ToDoubleArray() => DType == DType.Float64 ? Download<double>() : DownloadAs<double>(DType.Float64);

    /// <summary>Copies the elements to a new long array (converting from any dtype; floats truncate), row-major.</summary>
    public long[] ToInt64Array() => DType == DType.Int64 ? Download<long>() : DownloadAs<long>(DType.Int64);

    /// <summary>Copies the elements to a new bool array (x != 0), row-major.</summary>
    public bool[] ToBoolArray() => DType == DType.Bool ? Download<bool>() : DownloadAs<bool>(DType.Bool);

    // The converted copy is a temporary nobody else sees: its storage goes back at once.
    private T[] DownloadAs<T>(DType dtype) where T : unmanaged
    {
        Tensor converted;
        using (Autograd.NoGrad())
        {
            converted = Cast(dtype);
        }
        try
        {
            return converted.Download<T>();
        }
        finally
        {
            TensorScope.ReleaseNow(converted.Version, "the host copy it was made for");
        }
    }

    private T[] Download<T>() where T : unmanaged
    {
        var data = new T[Numel];
        Backend.Download<T>(Storage, data);
        return data;
    }

    /// <summary>The value of a one-element tensor as a double.</summary>
    public double Item()
    {
        if (Numel != 1)
        {
            throw new InvalidOperationException($"Item() needs a tensor with exactly one element; this one is {Shape} ({Numel} elements).");
        }
        // One element straight into the stack, converted here: no cast tensor, no array (a loss's Item() runs once per task).
        switch (DType)
        {
            case DType.Float32:
            {
                Span<float> v = stackalloc float[1];
                Backend.Download<float>(Storage, v);
                return v[0];
            }
            case DType.Float64:
            {
                Span<double> v = stackalloc double[1];
                Backend.Download<double>(Storage, v);
                return v[0];
            }
            case DType.Int64:
            {
                Span<long> v = stackalloc long[1];
                Backend.Download<long>(Storage, v);
                return v[0];
            }
            default:
            {
                Span<bool> v = stackalloc bool[1];
                Backend.Download<bool>(Storage, v);
                return v[0] ? 1 : 0;
            }
        }
    }

    /// <summary>The value of a one-element tensor converted to <typeparamref name="T"/>.</summary>
    public T Item<T>() where T : System.Numerics.INumberBase<T> => T.CreateChecked(Item());

    /// <summary>Copies to <paramref name="device"/> (a no-op returning this tensor when already there). Differentiable.</summary>
    public Tensor To(Device device) => device == Device ? this : Functions.ToDevice(this, Backends.For(device));

    /// <summary>Converts to <paramref name="dtype"/> (this tensor when already so). Differentiable between float dtypes.</summary>
    public Tensor To(DType dtype) => dtype == DType ? this : Cast(dtype);

    /// <summary>
    /// PyTorch-like text: values (summarised beyond 1000 elements), then dtype when not float32,
    /// the device when not the CPU, and the grad function or requires_grad; a released tensor says so instead.
    /// </summary>
    public override string ToString()
    {
        if (Version.ReleasedBy is { } by)
        {
            return $"tensor(<{Describe()}, released by {by}>)";
        }
        var sb = new StringBuilder("tensor(");
        if (Numel <= 1000)
        {
            var values = ToDoubleArray();
            int index = 0;
            Format(sb, values, ref index, 0, 7);
        }
        else
        {
            sb.Append('<').Append(Shape.ToString()).Append(", ").Append(Numel).Append(" elements>");
        }
        if (DType != DType.Float32)
        {
            sb.Append(", dtype=").Append(DType.Name());
        }
        if (Device != Device.Cpu)
        {
            sb.Append(", device='").Append(Device).Append('\'');
        }
        if (GradFn is not null)
        {
            sb.Append(", grad_fn=<").Append(GradFn.Name).Append('>');
        }
        else if (_requiresGrad)
        {
            sb.Append(", requires_grad=True");
        }
        return sb.Append(')').ToString();
    }

    private void Format(StringBuilder sb, double[] values, ref int index, int axis, int indent)
    {
        if (axis == Rank)
        {
            sb.Append(FormatValue(values[index++]));
            return;
        }
        sb.Append('[');
        int n = Shape.Dims[axis];
        for (int i = 0; i < n; i++)
        {
            if (i > 0)
            {
                sb.Append(',');
                if (axis == Rank - 1)
                {
                    sb.Append(' ');
                }
                else
                {
                    sb.Append('\n', Rank - 1 - axis).Append(' ', indent + axis + 1);
                }
            }
            Format(sb, values, ref index, axis + 1, indent);
        }
        sb.Append(']');
    }

    private string FormatValue(double v) => DType switch
    {
        DType.Bool => v != 0 ? "True" : "False",
        DType.Int64 => ((long)v).ToString(CultureInfo.InvariantCulture),
        _ => v.ToString("0.0000", CultureInfo.InvariantCulture),
    };
}

/// <summary>
/// The family of tensors over one storage (a tensor and its views): counts in-place changes, and
/// records which <see cref="TensorScope"/> governs the storage and whether it was released.
/// </summary>
internal sealed class VersionCounter
{
    private static int s_ids;

    public int Value;

    /// <summary>A number for hashing (<see cref="FamilyIdentity"/>), cheaper than a new object's first hash code.</summary>
    public readonly int Id = Interlocked.Increment(ref s_ids);

    /// <summary>The <see cref="Id"/> of the newest family so far: every family started later has a larger one.</summary>
    public static int NewestId => Volatile.Read(ref s_ids);

    /// <summary>The storage the family views (null for families made without one).</summary>
    public IStorage? Storage;

    /// <summary>The scope that releases the storage when it ends; null: the garbage collector owns it.</summary>
    public TensorScope? Scope;

    /// <summary>Null while usable; once released, the scope's description (for the error message).</summary>
    public volatile string? ReleasedBy;

    /// <summary>How many tape nodes save a tensor of this family (the engine frees nothing that is saved).</summary>
    public int Saved;

    /// <summary>How many gradient slots of running backward passes hold a tensor of this family.</summary>
    public int Pending;

    /// <summary>
    /// Made by a backward pass and never handed out: only tape nodes can reach it, so it is released
    /// when the last node that saves it is released (see <see cref="Tape.Engine"/>).
    /// </summary>
    public bool EngineOwned;

    /// <summary>Who handed the family to the engine when not a backward pass (a <see cref="Nn.Sequential"/>'s activation): named when it is freed.</summary>
    public string? Owner;

    /// <summary>
    /// The family's channel sums as a fused kernel left them (see <see cref="Tensor.RememberChannelSums"/>), or null.
    /// One reference, so that the many families of the small-op path stay small.
    /// </summary>
    public ChannelSumsMemo? ChannelSums;

    /// <summary>Still usable, and neither saved by a tape node nor held by a gradient slot.</summary>
    public bool Unheld => Volatile.Read(ref Saved) == 0 && Volatile.Read(ref Pending) == 0 && ReleasedBy is null;
}

/// <summary>
/// Channel sums [C] of a family's contents, with the bits of a sum over every axis but 1 of them viewed with
/// <paramref name="Batch"/> leading rows, taken at <paramref name="Version"/> (any later in-place write makes them stale).
/// </summary>
internal sealed record ChannelSumsMemo(Tensor Sums, int Version, int Batch);

/// <summary>Families compared by reference and hashed by <see cref="VersionCounter.Id"/>.</summary>
internal sealed class FamilyIdentity : IEqualityComparer<VersionCounter>
{
    public static readonly FamilyIdentity Instance = new();

    public bool Equals(VersionCounter? x, VersionCounter? y) => ReferenceEquals(x, y);

    public int GetHashCode(VersionCounter obj) => obj.Id;
}
