using Higher.Tape;

namespace Higher;

public sealed partial class Tensor
{
    /// <summary>Normalizes an axis list (null = all axes) into a per-axis flag array; throws on duplicates.</summary>
    private bool[] AxisFlags(ReadOnlySpan<int> axes, bool all)
    {
        var flags = new bool[Rank];
        if (all)
        {
            Array.Fill(flags, true);
            return flags;
        }
        foreach (int axis in axes)
        {
            int a = Shape.NormalizeAxis(axis);
            if (flags[a])
            {
                throw new ArgumentException($"Axis {axis} appears twice in the reduction axes of {Describe()}.");
            }
            flags[a] = true;
        }
        return flags;
    }

    private static Shape ReducedShape(Shape shape, bool[] flags, bool keepDim)
    {
        var source = shape.Dims;
        int rank = 0;
        for (int i = 0; i < source.Length; i++)
        {
            rank += keepDim || !flags[i] ? 1 : 0;
        }
        var dims = new int[rank];
        int k = 0;
        for (int i = 0; i < source.Length; i++)
        {
            if (!flags[i])
            {
                dims[k++] = source[i];
            }
            else if (keepDim)
            {
                dims[k++] = 1;
            }
        }
        return Higher.Shape.FromOwned(dims);
    }

    private Tensor RawReduce(ReduceOp op, bool[] flags, bool keepDim) => RawReduce(op, flags, keepDim, ReducedShape(Shape, flags, true));

    private Tensor RawReduce(ReduceOp op, bool[] flags, bool keepDim, Shape kept)
    {
        var y = Empty(Backend, DType, kept);
        Backend.Reduce(op, Storage, Shape, flags, y.Storage);
        return keepDim ? y : new Tensor(y.Storage, ReducedShape(Shape, flags, false), Backend, null, y.Version);
    }

    /// <summary>
    /// Sum over the axes flagged in <paramref name="flags"/> (a float tensor; the flags are owned by the call). A sum over
    /// every axis but 1 takes the channel sums a fused kernel left for this contents (<see cref="RememberChannelSums"/>),
    /// the bits <see cref="IBackend.Reduce"/> would write, instead of reading the tensor again.
    /// </summary>
    internal Tensor SumFlagged(bool[] flags, bool keepDim)
    {
        var kept = ReducedShape(Shape, flags, true);
        var y = TakeChannelSums(flags, keepDim, kept) ?? RawReduce(ReduceOp.Sum, flags, keepDim, kept);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.Sum.Record(y, new Reduced(kept, flags), [this]);
        }
        return y;
    }

    /// <summary>Reduce flags of every axis but 1 (the channel axis of [N, C, ...]) for a tensor of <paramref name="rank"/>: a bias gradient's sum, new for each call.</summary>
    internal static bool[] AllButChannelAxis(int rank)
    {
        var flags = new bool[rank];
        for (int i = 0; i < rank; i++)
        {
            flags[i] = i != 1;
        }
        return flags;
    }

    /// <summary>Tests only: never reuse remembered channel sums on this thread (each sum runs its own reduction).</summary>
    [ThreadStatic]
    internal static bool NoChannelSumsOnThisThread;

    /// <summary>Tests only: how many sums on this thread took remembered channel sums.</summary>
    [ThreadStatic]
    internal static int ChannelSumsTaken;

    /// <summary>
    /// Remembers <paramref name="sums"/> ([C], the bits of <see cref="IBackend.Reduce"/>'s sum over axes 0 and 2 of this
    /// tensor's contents as [N, C, rest], written by the kernel that wrote the contents) for the next sum of this family
    /// over every axis but 1 (a bias gradient), until an in-place write changes the version. The tensor must be
    /// [N, C, ...] with <paramref name="batch"/> = N.
    /// </summary>
    internal void RememberChannelSums(Tensor sums, int batch)
    {
        // Held, as a gradient slot holds a tensor: the backward pass frees what it made between nodes once nothing holds it.
        Interlocked.Increment(ref sums.Version.Pending);
        if (Interlocked.Exchange(ref Version.ChannelSums, new ChannelSumsMemo(sums, Version.Value, batch)) is { } old)
        {
            Tape.Engine.Unhold(old.Sums.Version);
        }
    }

    /// <summary>The remembered channel sums (shaped as this reduction's result, and forgotten) where they are this reduction's; otherwise null.</summary>
    private Tensor? TakeChannelSums(bool[] flags, bool keepDim, Shape kept)
    {
        var family = Version;
        if (family.ChannelSums is null)
        {
            return null;
        }
        // Taken or forgotten: either way no longer held here (what is taken, the pass holds next, in a slot). One
        // exchange, so that two passes summing the family at once cannot both take the one tensor.
        if (Interlocked.Exchange(ref family.ChannelSums, null) is not { } memo)
        {
            return null;
        }
        var sums = memo.Sums;
        bool usable = !NoChannelSumsOnThisThread && family.Value == memo.Version && Rank >= 3 && !flags[1]
            && Shape.Dims[0] == memo.Batch && Shape.Dims[1] == sums.Numel && sums.DType == DType && sums.Device == Device && !sums.IsReleased;
        for (int d = 0; d < Rank && usable; d++)
        {
            usable = d == 1 || flags[d];
        }
        if (!usable)
        {
            Tape.Engine.Unhold(sums.Version);
            return null;
        }
        Interlocked.Decrement(ref sums.Version.Pending);
        ChannelSumsTaken++;
        return new Tensor(sums.Storage, keepDim ? kept : ReducedShape(Shape, flags, false), Backend, null, sums.Version);
    }

    /// <summary>
    /// The sum over the axes flagged in <paramref name="flags"/> whose value a fused kernel already wrote into
    /// <paramref name="value"/> (the reduced shape with kept axes, the bits of <see cref="IBackend.Reduce"/>), recorded
    /// as <see cref="SumFlagged"/> records it.
    /// </summary>
    internal Tensor SumFlaggedFrom(bool[] flags, bool keepDim, Tensor value)
    {
        var kept = ReducedShape(Shape, flags, true);
        var y = keepDim ? value : new Tensor(value.Storage, ReducedShape(Shape, flags, false), Backend, null, value.Version);
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.Sum.Record(y, new Reduced(kept, flags), [this]);
        }
        return y;
    }

    /// <summary>Sum over all elements (a 0-d tensor).</summary>
    public Tensor Sum() => Sum(null, false);

    /// <summary>
    /// scale·Σ x² over all elements (a 0-d tensor), one tape node: the reduction of a squared error
    /// (<see cref="F.MseLoss"/>). Its kernels are those of <c>(x * x).Sum() * scale</c> (scale 1:
    /// no scaling), so the value has their bits; the backward x·(2·scale·g) has the bits of the
    /// composed form's backward (2·scale is exact), in two ops instead of four, and is itself differentiable.
    /// </summary>
    internal Tensor ScaledSumOfSquares(double scale)
    {
        RequireFloat("ScaledSumOfSquares");
        var squares = Empty(Backend, DType, Shape);
        Backend.Binary(BinaryOp.Mul, Storage, Shape, Storage, Shape, squares.Storage, Shape);
        var flags = AxisFlags(default, all: true);
        var y = squares.RawReduce(ReduceOp.Sum, flags, keepDim: false);
        squares.FreeIntermediate("ScaledSumOfSquares");
        if (scale != 1)
        {
            var sum = y;
            y = sum.RawUnary(UnaryOp.Affine, scale, 0);
            sum.FreeIntermediate("ScaledSumOfSquares");
        }
        if (Autograd.ShouldRecord(this))
        {
            Derivatives.ScaledSumOfSquares.Record(y, new Scalars(scale, 0), [this]);
        }
        return y;
    }

    /// <summary>Sum over <paramref name="axes"/> (all when null); keepDim keeps them as size 1. Gradient: broadcast back.</summary>
    public Tensor Sum(int[]? axes, bool keepDim = false)
    {
        if (!DType.IsFloatingPoint())
        {
            // Backends reduce floats only (IBackend.Reduce); counts and index sums are exact in
            // float64 up to 2^53.
            return Cast(DType.Float64).Sum(axes, keepDim).Cast(DType.Int64);
        }
        return SumFlagged(AxisFlags(axes, axes is null), keepDim);
    }

    /// <summary>Sum over one axis.</summary>
    public Tensor Sum(int axis, bool keepDim = false) => Sum([axis], keepDim);

    /// <summary>Mean over all elements.</summary>
    public Tensor Mean() => Mean(null, false);

    /// <summary>Mean over <paramref name="axes"/> (all when null). An empty reduction gives NaN, as in PyTorch.</summary>
    public Tensor Mean(int[]? axes, bool keepDim = false)
    {
        RequireFloat("Mean");
        long count = CountOver(AxisFlags(axes, axes is null));
        return Sum(axes, keepDim) * (count == 0 ? double.NaN : 1.0 / count);
    }

    /// <summary>Mean over one axis.</summary>
    public Tensor Mean(int axis, bool keepDim = false) => Mean([axis], keepDim);

    private long CountOver(bool[] flags)
    {
        long count = 1;
        for (int i = 0; i < Rank; i++)
        {
            if (flags[i])
            {
                count *= Shape.Dims[i];
            }
        }
        return count;
    }

    /// <summary>Variance over <paramref name="axes"/> with Bessel's <paramref name="correction"/> (1 = unbiased, PyTorch's default).</summary>
    public Tensor Var(int[]? axes = null, int correction = 1, bool keepDim = false)
    {
        RequireFloat("Var");
        long n = CountOver(AxisFlags(axes, axes is null));
        var centered = this - Mean(axes, keepDim: true);
        return (centered * centered).Sum(axes, keepDim) * (1.0 / Math.Max(0, n - correction));
    }

    /// <summary>Standard deviation: √Var.</summary>
    public Tensor Std(int[]? axes = null, int correction = 1, bool keepDim = false) => Var(axes, correction, keepDim).Sqrt();

    /// <summary>Maximum over <paramref name="axes"/> (all when null); ties share the gradient equally (PyTorch's amax).</summary>
    public Tensor Amax(int[]? axes = null, bool keepDim = false) => Extreme(ReduceOp.Max, axes, keepDim);

    /// <summary>Minimum over <paramref name="axes"/> (all when null); ties share the gradient equally.</summary>
    public Tensor Amin(int[]? axes = null, bool keepDim = false) => Extreme(ReduceOp.Min, axes, keepDim);

    /// <summary>Largest element.</summary>
    public Tensor Max() => Amax();

    /// <summary>Smallest element.</summary>
    public Tensor Min() => Amin();

    private Tensor Extreme(ReduceOp op, int[]? axes, bool keepDim)
    {
        if (!DType.IsFloatingPoint())
        {
            RequireFloat(op.ToString());
        }
        var flags = AxisFlags(axes, axes is null);
        if (CountOver(flags) == 0)
        {
            throw new ArgumentException($"{op} over an empty set of elements of {Describe()} has no identity.");
        }
        var y = RawReduce(op, flags, keepDim);
        if (Autograd.ShouldRecord(this))
        {
            (op == ReduceOp.Max ? Derivatives.Amax : Derivatives.Amin).Record(y, new Reduced(ReducedShape(Shape, flags, true), flags), [this]);
        }
        return y;
    }

    /// <summary>Maximum along <paramref name="axis"/> with the index of the first maximum. Gradient goes to that index.</summary>
    public (Tensor Values, Tensor Indices) Max(int axis, bool keepDim = false) => ArgExtreme(ReduceOp.Max, axis, keepDim);

    /// <summary>Minimum along <paramref name="axis"/> with the index of the first minimum.</summary>
    public (Tensor Values, Tensor Indices) Min(int axis, bool keepDim = false) => ArgExtreme(ReduceOp.Min, axis, keepDim);

    /// <summary>Index of the maximum along <paramref name="axis"/>.</summary>
    public Tensor ArgMax(int axis, bool keepDim = false) => ArgExtreme(ReduceOp.Max, axis, keepDim).Indices;

    /// <summary>Index of the minimum along <paramref name="axis"/>.</summary>
    public Tensor ArgMin(int axis, bool keepDim = false) => ArgExtreme(ReduceOp.Min, axis, keepDim).Indices;

    private (Tensor Values, Tensor Indices) ArgExtreme(ReduceOp op, int axis, bool keepDim)
    {
        if (!DType.IsFloatingPoint())
        {
            RequireFloat(op.ToString());
        }
        int a = Shape.NormalizeAxis(axis);
        var (outer, size, inner) = Split(a);
        if (size == 0)
        {
            throw new ArgumentException($"{op} along axis {axis} of {Describe()}: the axis is empty.");
        }
        var flags = new bool[Rank];
        flags[a] = true;
        var keptShape = ReducedShape(Shape, flags, true);
        var values = Empty(Backend, DType, keptShape);
        var indices = Empty(Backend, DType.Int64, keptShape);
        Backend.ArgReduce(op, Storage, outer, size, inner, values.Storage, indices.Storage);
        if (Autograd.ShouldRecord(this))
        {
            (op == ReduceOp.Max ? Derivatives.MaxAlong : Derivatives.MinAlong).Record(values, a, [this], [indices]);
        }
        if (keepDim)
        {
            return (values, indices);
        }
        var outShape = ReducedShape(Shape, flags, false).ToArray();
        return (values.Reshape(outShape), indices.Reshape(outShape));
    }

    /// <summary>Views the shape as [outer, size, inner] around <paramref name="axis"/>.</summary>
    internal (int Outer, int Size, int Inner) Split(int axis)
    {
        long outer = 1, inner = 1;
        for (int i = 0; i < axis; i++)
        {
            outer *= Shape.Dims[i];
        }
        for (int i = axis + 1; i < Rank; i++)
        {
            inner *= Shape.Dims[i];
        }
        return (checked((int)outer), Shape.Dims[axis], checked((int)inner));
    }

    /// <summary>log Σ exp(x) over <paramref name="axes"/>, computed stably by shifting by the (detached) maximum.</summary>
    public Tensor LogSumExp(int[] axes, bool keepDim = false)
    {
        RequireFloat("LogSumExp");
        Tensor shift;
        using (Autograd.NoGrad())
        {
            var m = Amax(axes, keepDim: true);
            shift = Where(m.Abs() < double.PositiveInfinity, m, 0);
        }
        var lse = (this - shift).Exp().Sum(axes, keepDim: true).Log() + shift;
        return keepDim ? lse : lse.Squeeze(axes);
    }

    /// <summary>log Σ exp(x) along one axis.</summary>
    public Tensor LogSumExp(int axis, bool keepDim = false) => LogSumExp([axis], keepDim);

    /// <summary>Softmax along <paramref name="axis"/>: exp(x - logsumexp(x)).</summary>
    public Tensor Softmax(int axis)
    {
        RequireFloat("Softmax");
        return LogSoftmax(axis).Exp();
    }

    /// <summary>Log-softmax along <paramref name="axis"/>: x - logsumexp(x).</summary>
    public Tensor LogSoftmax(int axis)
    {
        RequireFloat("LogSoftmax");
        return this - LogSumExp([axis], keepDim: true);
    }
}
