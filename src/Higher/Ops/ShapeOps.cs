using Higher.Tape;

namespace Higher;

public sealed partial class Tensor
{
    /// <summary>
    /// Same elements in a new shape (one dimension may be -1 and is inferred). A view: shares the
    /// storage and the version counter. Gradient: reshaped back.
    /// </summary>
    public Tensor Reshape(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        return ReshapeTo(InferShape(dims));
    }

    /// <summary>Reshape to a shape already known to have this tensor's element count (the tape's own reshapes: no inference, no copy of the dims).</summary>
    internal Tensor ReshapeTo(Shape shape)
    {
        if (shape == Shape)
        {
            return this;
        }
        if (shape.Numel != Numel)
        {
            throw new ArgumentException($"Cannot reshape {Describe()} ({Numel} elements) to {shape}.");
        }
        var y = new Tensor(Storage, shape, Backend, null, Version);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.Reshape.Record(y, default, [this]);
        }
        return y;
    }

    /// <summary>Alias of <see cref="Reshape"/> (every tensor is contiguous, so a view always exists).</summary>
    public Tensor View(params int[] dims) => Reshape(dims);

    private Shape InferShape(int[] dims)
    {
        int infer = -1;
        long known = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] == -1)
            {
                if (infer >= 0)
                {
                    throw new ArgumentException($"Cannot reshape {Describe()} to [{string.Join(", ", dims)}]: only one dimension can be -1.");
                }
                infer = i;
            }
            else if (dims[i] < 0)
            {
                throw new ArgumentException($"Cannot reshape {Describe()} to [{string.Join(", ", dims)}]: dimension {i} is negative.");
            }
            else
            {
                known *= dims[i];
            }
        }
        var result = (int[])dims.Clone();
        if (infer >= 0)
        {
            if (known == 0 || Numel % known != 0)
            {
                throw new ArgumentException($"Cannot reshape {Describe()} ({Numel} elements) to [{string.Join(", ", dims)}].");
            }
            result[infer] = (int)(Numel / known);
        }
        else if (known != Numel)
        {
            throw new ArgumentException($"Cannot reshape {Describe()} ({Numel} elements) to [{string.Join(", ", dims)}] ({known} elements).");
        }
        return Higher.Shape.FromOwned(result);
    }

    /// <summary>Merges dimensions start..end (inclusive) into one.</summary>
    public Tensor Flatten(int startAxis = 0, int endAxis = -1)
    {
        if (Rank == 0)
        {
            return Reshape(1);
        }
        int s = Shape.NormalizeAxis(startAxis), e = Shape.NormalizeAxis(endAxis);
        if (s > e)
        {
            throw new ArgumentException($"Flatten of {Describe()}: start axis {startAxis} is after end axis {endAxis}.");
        }
        var dims = new List<int>();
        for (int i = 0; i < s; i++)
        {
            dims.Add(Shape.Dims[i]);
        }
        long merged = 1;
        for (int i = s; i <= e; i++)
        {
            merged *= Shape.Dims[i];
        }
        dims.Add(checked((int)merged));
        for (int i = e + 1; i < Rank; i++)
        {
            dims.Add(Shape.Dims[i]);
        }
        return Reshape(dims.ToArray());
    }

    /// <summary>Inserts a size-1 dimension at <paramref name="axis"/> (negative counts from the end of the result).</summary>
    public Tensor Unsqueeze(int axis)
    {
        int a = axis < 0 ? axis + Rank + 1 : axis;
        if (a < 0 || a > Rank)
        {
            throw new ArgumentOutOfRangeException(nameof(axis), axis, $"Unsqueeze axis {axis} is out of range for {Describe()}.");
        }
        var dims = new List<int>(Shape.ToArray());
        dims.Insert(a, 1);
        return Reshape(dims.ToArray());
    }

    /// <summary>Removes size-1 dimensions: all of them, or those in <paramref name="axes"/> (others are left alone, as in PyTorch).</summary>
    public Tensor Squeeze(params int[]? axes)
    {
        var drop = new bool[Rank];
        if (axes is null || axes.Length == 0)
        {
            for (int i = 0; i < Rank; i++)
            {
                drop[i] = Shape.Dims[i] == 1;
            }
        }
        else
        {
            foreach (int axis in axes)
            {
                int a = Shape.NormalizeAxis(axis);
                drop[a] = Shape.Dims[a] == 1;
            }
        }
        var dims = new List<int>();
        for (int i = 0; i < Rank; i++)
        {
            if (!drop[i])
            {
                dims.Add(Shape.Dims[i]);
            }
        }
        return Reshape(dims.ToArray());
    }

    /// <summary>Reorders the dimensions (a copy); the gradient is permuted back.</summary>
    public Tensor Permute(params int[] perm)
    {
        ArgumentNullException.ThrowIfNull(perm);
        if (perm.Length != Rank)
        {
            throw new ArgumentException($"Permute of {Describe()} needs {Rank} axes; got [{string.Join(", ", perm)}].");
        }
        var seen = new bool[Rank];
        var p = new int[Rank];
        bool identity = true;
        for (int i = 0; i < Rank; i++)
        {
            p[i] = Shape.NormalizeAxis(perm[i]);
            if (seen[p[i]])
            {
                throw new ArgumentException($"Permute of {Describe()}: axis {perm[i]} repeats in [{string.Join(", ", perm)}].");
            }
            seen[p[i]] = true;
            identity &= p[i] == i;
        }
        if (identity)
        {
            return this;
        }
        var strides = Shape.ContiguousStrides();
        var outDims = new int[Rank];
        var srcStrides = new long[Rank];
        for (int i = 0; i < Rank; i++)
        {
            outDims[i] = Shape.Dims[p[i]];
            srcStrides[i] = strides[p[i]];
        }
        var outShape = Higher.Shape.FromOwned(outDims);
        var y = Empty(Backend, DType, outShape);
        Backend.StridedCopy(Storage, 0, srcStrides, y.Storage, 0, outShape.ContiguousStrides(), outShape);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.Permute.Record(y, p, [this]);
        }
        return y;
    }

    /// <summary>Swaps two dimensions.</summary>
    public Tensor Transpose(int axis0, int axis1)
    {
        var perm = new int[Rank];
        for (int i = 0; i < Rank; i++)
        {
            perm[i] = i;
        }
        int a = Shape.NormalizeAxis(axis0), b = Shape.NormalizeAxis(axis1);
        (perm[a], perm[b]) = (perm[b], perm[a]);
        return Permute(perm);
    }

    /// <summary>Transpose of a matrix (rank ≤ 2), as PyTorch's .T.</summary>
    public Tensor T => Rank < 2 ? this : Rank == 2 ? Transpose(0, 1) : throw new InvalidOperationException($"T is for rank ≤ 2; {Describe()} has rank {Rank}. Use Transpose or MT.");

    /// <summary>Transpose of the last two dimensions.</summary>
    public Tensor MT => Transpose(-2, -1);

    /// <summary>
    /// Broadcasts to <paramref name="dims"/> (size-1 dimensions repeat; -1 keeps a size; new leading
    /// dimensions are added). A copy. Gradient: summed back.
    /// </summary>
    public Tensor Expand(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        var target = (int[])dims.Clone();
        int lead = target.Length - Rank;
        if (lead < 0)
        {
            throw new ArgumentException($"Cannot expand {Describe()} to [{string.Join(", ", dims)}]: fewer dimensions.");
        }
        for (int i = 0; i < target.Length; i++)
        {
            if (target[i] == -1)
            {
                if (i < lead)
                {
                    throw new ArgumentException($"Cannot expand {Describe()} to [{string.Join(", ", dims)}]: -1 in a new leading dimension.");
                }
                target[i] = Shape.Dims[i - lead];
            }
        }
        return ExpandTo(Higher.Shape.FromOwned(target));
    }

    /// <summary>Expand to a shape this one broadcasts to (no -1 entries): the strides live on the stack.</summary>
    internal Tensor ExpandTo(Shape targetShape)
    {
        if (targetShape == Shape)
        {
            return this;
        }
        if (!Shape.IsBroadcastableTo(targetShape))
        {
            throw new ArgumentException($"Cannot expand {Describe()} to {targetShape}: a non-singleton dimension differs.");
        }
        var y = Empty(Backend, DType, targetShape);
        BroadcastInto(Backend, Storage, Shape, y.Storage, targetShape);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.Expand.Record(y, default, [this]);
        }
        return y;
    }

    /// <summary>Alias of <see cref="Expand"/>.</summary>
    public Tensor BroadcastTo(Shape shape) => Expand(shape.ToArray());

    /// <summary>
    /// Copies <paramref name="source"/> (row-major <paramref name="from"/>) broadcast into the contiguous
    /// <paramref name="destination"/> of shape <paramref name="to"/>, one StridedCopy with its strides on
    /// the stack (Expand, a bias broadcast into a GEMM's C, CopyFrom).
    /// </summary>
    internal static void BroadcastInto(IBackend backend, IStorage source, Shape from, IStorage destination, Shape to)
    {
        int rank = to.Rank;
        Span<long> read = rank <= 8 ? stackalloc long[rank] : new long[rank];
        Span<long> write = rank <= 8 ? stackalloc long[rank] : new long[rank];
        BroadcastStrides(from, to, read);
        to.ContiguousStrides(write);
        backend.StridedCopy(source, 0, read, destination, 0, write, to);
    }

    /// <summary>The strides that read <paramref name="from"/> (row-major) as <paramref name="to"/>, which it broadcasts to: 0 along expanded dimensions.</summary>
    internal static void BroadcastStrides(Shape from, Shape to, Span<long> strides)
    {
        var dims = from.Dims;
        int lead = to.Rank - dims.Length;
        strides[..lead].Clear();
        long s = 1;
        for (int i = dims.Length - 1; i >= 0; i--)
        {
            strides[lead + i] = dims[i] == 1 ? 0 : s;
            s *= dims[i];
        }
    }

    /// <summary>
    /// Elements start, start + step, ... below end along <paramref name="axis"/> (Python slicing
    /// with clamped bounds; negative start/end count from the end; step &gt; 0). A copy.
    /// </summary>
    public Tensor Slice(int axis, int start, int end, int step = 1)
    {
        int a = Shape.NormalizeAxis(axis);
        int n = Shape.Dims[a];
        if (step <= 0)
        {
            throw new ArgumentException($"Slice of {Describe()} along axis {axis}: step must be positive, got {step}.");
        }
        if (start < 0)
        {
            start += n;
        }
        if (end < 0)
        {
            end += n;
        }
        start = Math.Clamp(start, 0, n);
        end = Math.Clamp(end, start, n);
        int length = (end - start + step - 1) / step;
        if (start == 0 && step == 1 && length == n)
        {
            return this;
        }
        var outDims = Shape.ToArray();
        outDims[a] = length;
        var outShape = Higher.Shape.FromOwned(outDims);
        var srcStrides = Shape.ContiguousStrides();
        long offset = start * srcStrides[a];
        srcStrides[a] *= step;
        var y = Empty(Backend, DType, outShape);
        Backend.StridedCopy(Storage, offset, srcStrides, y.Storage, 0, outShape.ContiguousStrides(), outShape);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.Slice.Record(y, new AxisSlice(a, start, step), [this]);
        }
        return y;
    }

    /// <summary>
    /// A tensor of <paramref name="shape"/> that is zero except along <paramref name="axis"/> at
    /// start, start + step, ..., where it holds <paramref name="source"/>: the adjoint of <see cref="Slice"/>.
    /// </summary>
    internal static Tensor SliceScatter(Tensor source, Shape shape, int axis, int start, int step)
    {
        var y = ZerosOn(source.Backend, source.DType, shape);
        var dstStrides = shape.ContiguousStrides();
        long offset = start * dstStrides[axis];
        dstStrides[axis] *= step;
        source.Backend.StridedCopy(source.Storage, 0, source.Shape.ContiguousStrides(), y.Storage, offset, dstStrides, source.Shape);
        if (Autograd.ShouldRecord(source))
        {
            Derivatives.SliceScatter.Record(y, new AxisSlice(axis, start, step), [source]);
        }
        return y;
    }

    /// <summary><paramref name="length"/> elements from <paramref name="start"/> along <paramref name="axis"/>.</summary>
    public Tensor Narrow(int axis, int start, int length)
    {
        int a = Shape.NormalizeAxis(axis);
        int n = Shape.Dims[a];
        if (start < 0)
        {
            start += n;
        }
        if (start < 0 || length < 0 || start + length > n)
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"Narrow of {Describe()} along axis {axis}: [{start}, {start + length}) is outside [0, {n}).");
        }
        return Slice(a, start, start + length);
    }

    /// <summary>The slice at <paramref name="index"/> along <paramref name="axis"/>, with that axis removed.</summary>
    public Tensor Select(int axis, int index)
    {
        int a = Shape.NormalizeAxis(axis);
        int n = Shape.Dims[a];
        int i = index < 0 ? index + n : index;
        if (i < 0 || i >= n)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"Select index {index} is out of range for axis {axis} of {Describe()}.");
        }
        var dims = new List<int>(Shape.ToArray());
        dims.RemoveAt(a);
        return Narrow(a, i, 1).Reshape(dims.ToArray());
    }

    /// <summary>Row <paramref name="index"/> (select along axis 0).</summary>
    [System.Runtime.CompilerServices.IndexerName("Row")]
    public Tensor this[int index] => Select(0, index);

    /// <summary>Concatenates along <paramref name="axis"/>; other dimensions must match. Gradient: narrowed back to each piece.</summary>
    public static Tensor Cat(IReadOnlyList<Tensor> tensors, int axis = 0)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count == 0)
        {
            throw new ArgumentException("Cat needs at least one tensor.", nameof(tensors));
        }
        var first = tensors[0];
        int a = first.Shape.NormalizeAxis(axis);
        int total = 0;
        for (int t = 0; t < tensors.Count; t++)
        {
            var x = tensors[t];
            CheckSameDeviceAndDType("Cat", first, x);
            bool ok = x.Rank == first.Rank;
            for (int d = 0; ok && d < first.Rank; d++)
            {
                ok = d == a || x.Shape.Dims[d] == first.Shape.Dims[d];
            }
            if (!ok)
            {
                throw new ArgumentException($"Cat along axis {axis}: tensor {t} has shape {x.Shape}, incompatible with tensor 0's {first.Shape}.");
            }
            total += x.Shape.Dims[a];
        }
        var dims = first.Shape.ToArray();
        dims[a] = total;
        var outShape = Higher.Shape.FromOwned(dims);
        var y = Empty(first.Backend, first.DType, outShape);
        var outStrides = outShape.ContiguousStrides();
        long offset = 0;
        foreach (var x in tensors)
        {
            if (x.Numel > 0)
            {
                first.Backend.StridedCopy(x.Storage, 0, x.Shape.ContiguousStrides(), y.Storage, offset, outStrides, x.Shape);
            }
            offset += x.Shape.Dims[a] * outStrides[a];
        }
        var inputs = tensors.ToArray();
        if (Autograd.ShouldRecord(inputs))
        {
            Derivatives.Cat.Record(y, a, inputs);
        }
        return y;
    }

    /// <summary>Stacks equally shaped tensors along a new axis.</summary>
    public static Tensor Stack(IReadOnlyList<Tensor> tensors, int axis = 0)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count == 0)
        {
            throw new ArgumentException("Stack needs at least one tensor.", nameof(tensors));
        }
        var parts = new Tensor[tensors.Count];
        for (int i = 0; i < parts.Length; i++)
        {
            if (tensors[i].Shape != tensors[0].Shape)
            {
                throw new ArgumentException($"Stack: tensor {i} has shape {tensors[i].Shape} but tensor 0 has {tensors[0].Shape}.");
            }
            parts[i] = tensors[i].Unsqueeze(axis);
        }
        return Cat(parts, axis < 0 ? axis : axis);
    }

    /// <summary>Splits into pieces of <paramref name="size"/> along <paramref name="axis"/> (the last may be smaller).</summary>
    public Tensor[] Split(int size, int axis = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        int a = Shape.NormalizeAxis(axis);
        int n = Shape.Dims[a];
        var parts = new List<Tensor>();
        for (int s = 0; s < n; s += size)
        {
            parts.Add(Narrow(a, s, Math.Min(size, n - s)));
        }
        return parts.ToArray();
    }

    /// <summary>Copies to another backend; the gradient is copied back.</summary>
    internal static Tensor ToBackend(Tensor x, IBackend backend)
    {
        var y = x.DType switch
        {
            DType.Float32 => new Tensor(backend.Upload<float>(x.ToFloatArray(), x.DType), x.Shape, backend),
            DType.Float64 => new Tensor(backend.Upload<double>(x.ToDoubleArray(), x.DType), x.Shape, backend),
            DType.Int64 => new Tensor(backend.Upload<long>(x.ToInt64Array(), x.DType), x.Shape, backend),
            _ => new Tensor(backend.Upload<bool>(x.ToBoolArray(), x.DType), x.Shape, backend),
        };
        if (Autograd.ShouldRecord(x))
        {
            Derivatives.ToDevice.Record(y, default, [x]);
        }
        return y;
    }
}

internal static class Functions
{
    public static Tensor ToDevice(Tensor x, IBackend backend) => Tensor.ToBackend(x, backend);
}
