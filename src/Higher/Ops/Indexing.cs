using Higher.Tape;

namespace Higher;

public sealed partial class Tensor
{
    private void CheckIndex(string op, Tensor index, int bound)
    {
        if (index.DType != DType.Int64)
        {
            throw new ArgumentException($"{op}: index must be int64; got {index.Describe()}.");
        }
        if (index.Device != Device)
        {
            throw new ArgumentException($"{op}: index is on {index.Device} but {Describe()} is on {Device}.");
        }
        // Bounds are checked where it costs no device round-trip (nor a copy): host storages; elsewhere the
        // kernels and, in tests and Debug builds, CheckedBackend check them.
        if (index.TryReadHostInt64(out var values))
        {
            foreach (long i in values)
            {
                if (i < 0 || i >= bound)
                {
                    throw new ArgumentOutOfRangeException(nameof(index), $"{op}: index {i} is out of range [0, {bound}) for {Describe()}.");
                }
            }
        }
    }

    /// <summary>The elements of an int64 tensor held in host memory, read in place; false on other devices.</summary>
    internal bool TryReadHostInt64(out ReadOnlySpan<long> values)
    {
        if (DType == DType.Int64 && Storage is IHostStorage host)
        {
            values = host.Read<long>()[..checked((int)Numel)];
            return true;
        }
        values = default;
        return false;
    }

    private void CheckSameExceptAxis(string op, Tensor other, int axis, string otherName)
    {
        bool ok = other.Rank == Rank;
        for (int d = 0; ok && d < Rank; d++)
        {
            ok = d == axis || other.Shape.Dims[d] == Shape.Dims[d];
        }
        if (!ok)
        {
            throw new ArgumentException($"{op} along axis {axis}: {otherName} has shape {other.Shape}, which must equal {Describe()}'s shape except along that axis.");
        }
    }

    /// <summary>
    /// y[..., j, ...] = x[..., index[..., j, ...], ...] along <paramref name="axis"/> (torch.gather; index has
    /// x's shape except along the axis). Gradient: scatter-added back.
    /// </summary>
    public Tensor Gather(int axis, Tensor index)
    {
        int a = Shape.NormalizeAxis(axis);
        CheckSameExceptAxis("Gather", index, a, "index");
        CheckIndex("Gather", index, Shape.Dims[a]);
        var (outer, size, inner) = Split(a);
        var y = Empty(Backend, DType, index.Shape);
        Backend.Gather(Storage, outer, size, inner, index.Storage, index.Shape.Dims[a], y.Storage);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.Gather.Record(y, a, [this], [index]);
        }
        return y;
    }

    /// <summary>
    /// A copy of this tensor with source added at the indexed positions along <paramref name="axis"/>
    /// (torch.scatter_add). Gradients: identity to this tensor, gather to the source.
    /// </summary>
    public Tensor ScatterAdd(int axis, Tensor index, Tensor source)
    {
        int a = Shape.NormalizeAxis(axis);
        CheckSameDeviceAndDType("ScatterAdd", this, source);
        if (index.Shape != source.Shape)
        {
            throw new ArgumentException($"ScatterAdd: index {index.Shape} and source {source.Shape} must have the same shape.");
        }
        CheckSameExceptAxis("ScatterAdd", source, a, "source");
        CheckIndex("ScatterAdd", index, Shape.Dims[a]);
        var (outer, size, inner) = Split(a);
        var y = Empty(Backend, DType, Shape);
        Backend.StridedCopy(Storage, 0, Shape.ContiguousStrides(), y.Storage, 0, Shape.ContiguousStrides(), Shape);
        Backend.ScatterAdd(y.Storage, outer, size, inner, index.Storage, index.Shape.Dims[a], source.Storage);
        if (Autograd.ShouldRecord(this, source))
        {
            Derivatives.ScatterAdd.Record(y, a, [this, source], [index]);
        }
        return y;
    }

    /// <summary>
    /// zeros(<paramref name="shape"/>).ScatterAdd(axis, index, source), for a backward: one call clears a fresh tensor and
    /// scatters into it (<see cref="IBackend.ScatterAddIntoZeros"/>), without the copy of the zeros that the out-of-place
    /// <see cref="ScatterAdd"/> makes.
    /// The index was checked where it was made (a forward's argument, or a kernel's output). Gradient: the source's,
    /// gathered by the index.
    /// </summary>
    internal static Tensor ScatterAddIntoZeros(Shape shape, int axis, Tensor index, Tensor source)
    {
        var y = Empty(source.Backend, source.DType, shape);
        int a = shape.NormalizeAxis(axis);
        var (outer, size, inner) = y.Split(a);
        source.Backend.ScatterAddIntoZeros(y.Storage, outer, size, inner, index.Storage, index.Shape.Dims[a], source.Storage);
        if (Autograd.ShouldRecord(source))
        {
            Derivatives.ScatterAddIntoZeros.Record(y, a, [source], [index]);
        }
        return y;
    }

    /// <summary>Entries at the 1-D <paramref name="index"/> along <paramref name="axis"/>. Gradient: index-added back.</summary>
    public Tensor IndexSelect(int axis, Tensor index)
    {
        int a = Shape.NormalizeAxis(axis);
        if (index.Rank != 1)
        {
            throw new ArgumentException($"IndexSelect: index must be 1-D; got {index.Describe()}.");
        }
        CheckIndex("IndexSelect", index, Shape.Dims[a]);
        var (outer, size, inner) = Split(a);
        var dims = Shape.ToArray();
        dims[a] = index.Shape.Dims[0];
        var y = Empty(Backend, DType, Higher.Shape.FromOwned(dims));
        Backend.IndexSelect(Storage, outer, size, inner, index.Storage, dims[a], y.Storage);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.IndexSelect.Record(y, a, [this], [index]);
        }
        return y;
    }

    /// <summary>A copy of this tensor with source's slices added at the 1-D <paramref name="index"/> along <paramref name="axis"/>.</summary>
    public Tensor IndexAdd(int axis, Tensor index, Tensor source)
    {
        int a = Shape.NormalizeAxis(axis);
        CheckSameDeviceAndDType("IndexAdd", this, source);
        if (index.Rank != 1 || source.Rank != Rank || source.Shape.Dims[a] != index.Shape.Dims[0])
        {
            throw new ArgumentException($"IndexAdd along axis {axis}: index {index.Shape} must be 1-D with the length of source {source.Shape} along that axis.");
        }
        CheckSameExceptAxis("IndexAdd", source, a, "source");
        CheckIndex("IndexAdd", index, Shape.Dims[a]);
        var (outer, size, inner) = Split(a);
        var y = Empty(Backend, DType, Shape);
        Backend.StridedCopy(Storage, 0, Shape.ContiguousStrides(), y.Storage, 0, Shape.ContiguousStrides(), Shape);
        Backend.IndexAdd(y.Storage, outer, size, inner, index.Storage, index.Shape.Dims[0], source.Storage);
        if (Autograd.ShouldRecord(this, source))
        {
            Derivatives.IndexAdd.Record(y, a, [this, source], [index]);
        }
        return y;
    }

    /// <summary>One-hot encoding of int64 class indices: shape [..., numClasses].</summary>
    public Tensor OneHot(int numClasses, DType dtype = DType.Float32)
    {
        if (DType != DType.Int64)
        {
            throw new ArgumentException($"OneHot needs int64 class indices; got {Describe()}.");
        }
        ArgumentOutOfRangeException.ThrowIfNegative(numClasses);
        // Checked here so that a bad class names OneHot and its indices, not the inner ScatterAdd.
        CheckIndex("OneHot", this, numClasses);
        var dims = new List<int>(Shape.ToArray()) { numClasses };
        var zeros = ZerosOn(Backend, dtype, Higher.Shape.FromOwned(dims.ToArray()));
        var ones = FullOn(Backend, dtype, Higher.Shape.FromOwned([.. Shape.ToArray(), 1]), 1);
        return zeros.ScatterAdd(-1, Unsqueeze(-1), ones);
    }
}
