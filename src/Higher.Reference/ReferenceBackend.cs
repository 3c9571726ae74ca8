using System.Numerics;
using System.Runtime.CompilerServices;
using Higher.Reference.Elementwise;

namespace Higher.Reference;

/// <summary>
/// The managed CPU backend: every <see cref="IBackend"/> kernel over <see cref="CpuStorage"/>
/// arrays, vectorized with Vector256/Vector512, with a cache-blocked FMA GEMM. It is the
/// numeric oracle of the project: elementwise transcendentals use the C library through
/// Math/MathF (erf and log1p, which .NET lacks or computes naively, are implemented here to
/// within one ulp), sums accumulate in double in a fixed order, and work is split across threads
/// only where each output element is computed by one thread in one order, so results are
/// bitwise identical whatever the thread count.
/// </summary>
public sealed class ReferenceBackend : IBackend
{
    private readonly Parallelism _threads;

    /// <summary>
    /// Creates a backend that uses at most <paramref name="maxDegreeOfParallelism"/> threads per kernel
    /// (-1: one per processor). The degree changes speed only: results are the same bits for every value.
    /// Its storages rent their arrays from <paramref name="pool"/> (default <see cref="CpuBufferPool.Shared"/>).
    /// </summary>
    public ReferenceBackend(int maxDegreeOfParallelism = -1, CpuBufferPool? pool = null)
    {
        Pool = pool ?? CpuBufferPool.Shared;
        if (maxDegreeOfParallelism == 0 || maxDegreeOfParallelism < -1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxDegreeOfParallelism), maxDegreeOfParallelism, "Use -1 for one thread per processor or a positive thread count.");
        }
        MaxDegreeOfParallelism = maxDegreeOfParallelism == -1 ? Environment.ProcessorCount : maxDegreeOfParallelism;
        _threads = new Parallelism(MaxDegreeOfParallelism);
    }

    /// <summary>The shared instance, using one thread per processor (the backend holds no mutable state).</summary>
    public static ReferenceBackend Instance { get; } = new();

    /// <summary>The pool this backend's storages rent their arrays from.</summary>
    public CpuBufferPool Pool { get; }

    /// <summary>Most threads one kernel call uses.</summary>
    public int MaxDegreeOfParallelism { get; }

    /// <inheritdoc/>
    public string Name => "reference";

    /// <inheritdoc/>
    public Device Device => Device.Cpu;

    /// <inheritdoc/>
    public IStorage Allocate(DType dtype, long length) => CpuStorage.Create(dtype, length, zeroed: true, Pool);

    /// <inheritdoc/>
    public IStorage AllocateUninitialized(DType dtype, long length) => CpuStorage.Create(dtype, length, zeroed: false, Pool);

    /// <inheritdoc/>
    public IStorage Upload<T>(ReadOnlySpan<T> data, DType dtype) where T : unmanaged
    {
        CheckElementType<T>(dtype, "Upload");
        var storage = CpuStorage.Create(dtype, data.Length, zeroed: false, Pool);
        data.CopyTo(storage.AsSpan<T>());
        return storage;
    }

    /// <inheritdoc/>
    public void Download<T>(IStorage source, Span<T> destination) where T : unmanaged
    {
        var s = Cpu(source);
        CheckElementType<T>(s.DType, "Download");
        if (destination.Length != s.Length)
        {
            throw new ArgumentException($"Download destination has {destination.Length} elements but the storage has {s.Length}.", nameof(destination));
        }
        s.AsSpan<T>().CopyTo(destination);
    }

    /// <inheritdoc/>
    public void Fill(IStorage destination, double value) => Copying.Fill(Cpu(destination), value);

    /// <inheritdoc/>
    public void Cast(IStorage source, IStorage destination)
    {
        var s = Cpu(source);
        var d = Cpu(destination);
        Guard.Holds("Cast", nameof(destination), d, s.Length);
        Copying.Cast(s, d);
    }

    /// <inheritdoc/>
    public void StridedCopy(IStorage source, long sourceOffset, ReadOnlySpan<long> sourceStrides,
        IStorage destination, long destinationOffset, ReadOnlySpan<long> destinationStrides, Shape shape)
    {
        var s = Cpu(source);
        var d = Cpu(destination);
        SameDType("StridedCopy", s, d);
        Guard.StridedWithin("StridedCopy", nameof(source), s, sourceOffset, sourceStrides, shape);
        Guard.StridedWithin("StridedCopy", nameof(destination), d, destinationOffset, destinationStrides, shape);
        // Rows in parallel only between distinct storages (an overlapping copy keeps its order).
        var threads = ReferenceEquals(s, d) ? null : _threads;
        switch (s.DType)
        {
            case DType.Float32:
                Copying.StridedCopy<float>(s.AsFloat32(), sourceOffset, sourceStrides, d.AsFloat32(), destinationOffset, destinationStrides, shape, threads);
                break;
            case DType.Float64:
                Copying.StridedCopy<double>(s.AsFloat64(), sourceOffset, sourceStrides, d.AsFloat64(), destinationOffset, destinationStrides, shape, threads);
                break;
            case DType.Int64:
                Copying.StridedCopy<long>(s.AsInt64(), sourceOffset, sourceStrides, d.AsInt64(), destinationOffset, destinationStrides, shape, threads);
                break;
            default:
                Copying.StridedCopy<bool>(s.AsBool(), sourceOffset, sourceStrides, d.AsBool(), destinationOffset, destinationStrides, shape, threads);
                break;
        }
    }

    /// <inheritdoc/>
    public void Unary(UnaryOp op, IStorage x, IStorage y, double alpha = 0, double beta = 0)
    {
        var xs = Cpu(x);
        var ys = Cpu(y);
        SameDType(Names.Unary[(int)op], xs, ys);
        Guard.Holds(Names.Unary[(int)op], nameof(y), ys, xs.Length);
        switch (xs.DType)
        {
            case DType.Float32:
                if (!UnaryKernels.Map<float>(_threads, op, xs.AsFloat32(), ys.AsFloat32(), alpha, beta))
                {
                    throw Unsupported(Names.Unary[(int)op], xs.DType);
                }
                break;
            case DType.Float64:
                if (!UnaryKernels.Map<double>(_threads, op, xs.AsFloat64(), ys.AsFloat64(), alpha, beta))
                {
                    throw Unsupported(Names.Unary[(int)op], xs.DType);
                }
                break;
            case DType.Int64 when op == UnaryOp.Affine:
                if (alpha == Math.Round(alpha) && beta == Math.Round(beta) && Math.Abs(alpha) < 9.2e18 && Math.Abs(beta) < 9.2e18)
                {
                    UnaryDriver.Map(_threads, xs.AsInt64(), ys.AsInt64(), new AffineOperator<long>((long)alpha, (long)beta));
                }
                else
                {
                    UnaryDriver.Map(_threads, xs.AsInt64(), ys.AsInt64(), new AffineTruncatingOperator(alpha, beta));
                }
                break;
            default:
                throw Unsupported(Names.Unary[(int)op], xs.DType);
        }
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        var sa = Cpu(a);
        var sb = Cpu(b);
        var sy = Cpu(y);
        SameDType(Names.Binary[(int)op], sa, sb, sy);
        CheckBroadcast(Names.Binary[(int)op], sa, aShape, sb, bShape, sy, yShape);
        if (sa.DType is DType.Float32 or DType.Float64 && ElementwiseSplit.TryPlan(_threads, yShape, out var split, aShape, bShape))
        {
            BinaryParallel(op, sa, aShape, sb, bShape, sy, split);
            return;
        }
        switch (sa.DType)
        {
            case DType.Float32:
                BinaryFloat<float>(op, sa.AsFloat32(), aShape, sb.AsFloat32(), bShape, sy.AsFloat32(), yShape);
                break;
            case DType.Float64:
                BinaryFloat<double>(op, sa.AsFloat64(), aShape, sb.AsFloat64(), bShape, sy.AsFloat64(), yShape);
                break;
            case DType.Int64:
                ReadOnlySpan<long> la = sa.AsInt64(), lb = sb.AsInt64();
                Span<long> ly = sy.AsInt64();
                switch (op)
                {
                    case BinaryOp.Add: BinaryDriver.Run(la, aShape, lb, bShape, ly, yShape, new AddOperator<long>()); break;
                    case BinaryOp.Sub: BinaryDriver.Run(la, aShape, lb, bShape, ly, yShape, new SubOperator<long>()); break;
                    case BinaryOp.Mul: BinaryDriver.Run(la, aShape, lb, bShape, ly, yShape, new MulOperator<long>()); break;
                    case BinaryOp.Maximum: BinaryDriver.Run(la, aShape, lb, bShape, ly, yShape, new MaximumOperator<long>()); break;
                    case BinaryOp.Minimum: BinaryDriver.Run(la, aShape, lb, bShape, ly, yShape, new MinimumOperator<long>()); break;
                    default: throw Unsupported(Names.Binary[(int)op], DType.Int64);
                }
                break;
            default:
                throw Unsupported(Names.Binary[(int)op], sa.DType);
        }
    }

    // The parallel path is its own method: a lambda in Binary would capture its parameters, and C#
    // allocates the closure for captured parameters on entry to the method, on the serial path too
    // (88 bytes per elementwise call of the small-op path).
    private void BinaryParallel(BinaryOp op, CpuStorage sa, Shape aShape, CpuStorage sb, Shape bShape, CpuStorage sy, ElementwiseSplit split) =>
        _threads.For(0, split.Chunks, c =>
        {
            var (ao, al, ash) = split.Operand(c, aShape);
            var (bo, bl, bsh) = split.Operand(c, bShape);
            var (yo, yl, ysh) = split.Output(c);
            if (sa.DType == DType.Float32)
            {
                BinaryFloat<float>(op, sa.AsFloat32().Slice(ao, al), ash, sb.AsFloat32().Slice(bo, bl), bsh, sy.AsFloat32().Slice(yo, yl), ysh);
            }
            else
            {
                BinaryFloat<double>(op, sa.AsFloat64().Slice(ao, al), ash, sb.AsFloat64().Slice(bo, bl), bsh, sy.AsFloat64().Slice(yo, yl), ysh);
            }
        });

    private static void BinaryFloat<T>(BinaryOp op, ReadOnlySpan<T> a, Shape aShape, ReadOnlySpan<T> b, Shape bShape, Span<T> y, Shape yShape)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case BinaryOp.Add: BinaryDriver.Run(a, aShape, b, bShape, y, yShape, new AddOperator<T>()); break;
            case BinaryOp.Sub: BinaryDriver.Run(a, aShape, b, bShape, y, yShape, new SubOperator<T>()); break;
            case BinaryOp.Mul: BinaryDriver.Run(a, aShape, b, bShape, y, yShape, new MulOperator<T>()); break;
            case BinaryOp.Div: BinaryDriver.Run(a, aShape, b, bShape, y, yShape, new DivOperator<T>()); break;
            case BinaryOp.Pow: BinaryDriver.Run(a, aShape, b, bShape, y, yShape, new PowOperator<T>()); break;
            case BinaryOp.Maximum: BinaryDriver.Run(a, aShape, b, bShape, y, yShape, new MaximumOperator<T>()); break;
            case BinaryOp.Minimum: BinaryDriver.Run(a, aShape, b, bShape, y, yShape, new MinimumOperator<T>()); break;
            case BinaryOp.ReluGrad: BinaryDriver.Run(a, aShape, b, bShape, y, yShape, new ReluGradOperator<T>()); break;
            default: throw Unsupported(Names.Binary[(int)op], typeof(T) == typeof(float) ? DType.Float32 : DType.Float64);
        }
    }

    /// <inheritdoc/>
    public void ScaledAdd(IStorage a, IStorage b, double alpha, IStorage y)
    {
        var sa = Cpu(a);
        var sb = Cpu(b);
        var sy = Cpu(y);
        SameDType("ScaledAdd", sa, sb, sy);
        long n = sa.Length;
        Guard.Holds("ScaledAdd", nameof(b), sb, n);
        Guard.Holds("ScaledAdd", nameof(y), sy, n);
        if (ReferenceEquals(sy, sb))
        {
            throw new ArgumentException("ScaledAdd: y may alias a but not b.", nameof(y));
        }
        if (sa.DType is not (DType.Float32 or DType.Float64))
        {
            throw Unsupported("ScaledAdd", sa.DType);
        }
        var shape = new Shape(checked((int)n));
        if (ElementwiseSplit.TryPlan(_threads, shape, out var split, shape, shape))
        {
            ScaledAddParallel(sa, sb, sy, alpha, split);
            return;
        }
        ScaledAddFloat(sa, sb, sy, alpha, 0, (int)n, shape);
    }

    // Its own method so that ScaledAdd's serial path allocates no closure (see BinaryParallel).
    private void ScaledAddParallel(CpuStorage sa, CpuStorage sb, CpuStorage sy, double alpha, ElementwiseSplit split) =>
        _threads.For(0, split.Chunks, c =>
        {
            var (o, l, sh) = split.Output(c);
            ScaledAddFloat(sa, sb, sy, alpha, o, l, sh);
        });

    private static void ScaledAddFloat(CpuStorage a, CpuStorage b, CpuStorage y, double alpha, int offset, int length, Shape shape)
    {
        if (a.DType == DType.Float32)
        {
            BinaryDriver.Run<float, ScaledAddOperator<float>>(a.AsFloat32().Slice(offset, length), shape, b.AsFloat32().Slice(offset, length), shape,
                y.AsFloat32().Slice(offset, length), shape, new ScaledAddOperator<float>((float)alpha));
        }
        else
        {
            BinaryDriver.Run<double, ScaledAddOperator<double>>(a.AsFloat64().Slice(offset, length), shape, b.AsFloat64().Slice(offset, length), shape,
                y.AsFloat64().Slice(offset, length), shape, new ScaledAddOperator<double>(alpha));
        }
    }

    /// <inheritdoc/>
    public void AdamUpdate(in AdamScalars scalars, IStorage param, IStorage grad, IStorage expAvg, IStorage expAvgSq, IStorage? maxExpAvgSq,
        IStorage paramOut, IStorage expAvgOut, IStorage expAvgSqOut, IStorage? maxExpAvgSqOut)
    {
        const string op = "AdamUpdate";
        var sp = Cpu(param);
        long n = sp.Length;
        CpuStorage[] all = scalars.Amsgrad
            ? [sp, Cpu(grad), Cpu(expAvg), Cpu(expAvgSq), Cpu(maxExpAvgSq ?? throw new ArgumentNullException(nameof(maxExpAvgSq))),
                Cpu(paramOut), Cpu(expAvgOut), Cpu(expAvgSqOut), Cpu(maxExpAvgSqOut ?? throw new ArgumentNullException(nameof(maxExpAvgSqOut)))]
            : [sp, Cpu(grad), Cpu(expAvg), Cpu(expAvgSq), Cpu(paramOut), Cpu(expAvgOut), Cpu(expAvgSqOut)];
        if (sp.DType is not (DType.Float32 or DType.Float64))
        {
            throw Unsupported(op, sp.DType);
        }
        foreach (var t in all)
        {
            SameDType(op, sp, t, t);
            Guard.Holds(op, "every storage", t, n);
        }
        var shape = new Shape(checked((int)n));
        if (ElementwiseSplit.TryPlan(_threads, shape, out var split, shape))
        {
            AdamParallel(scalars, all, split);
            return;
        }
        AdamFloat(scalars, all, 0, (int)n);
    }

    // Its own method so that the serial path allocates no closure (see BinaryParallel).
    private void AdamParallel(AdamScalars scalars, CpuStorage[] all, ElementwiseSplit split) =>
        _threads.For(0, split.Chunks, c =>
        {
            var (o, l, _) = split.Output(c);
            AdamFloat(scalars, all, o, l);
        });

    private static void AdamFloat(in AdamScalars s, CpuStorage[] all, int offset, int length)
    {
        if (all[0].DType == DType.Float32)
        {
            AdamKernel<float>(s, all, offset, length);
        }
        else
        {
            AdamKernel<double>(s, all, offset, length);
        }
    }

    /// <summary>
    /// Adam's update, element by element, with the composed update's roundings: every scalar converted
    /// to T as the Affine and Div kernels convert theirs, each Affine as α·x + β (β = 0 included), no
    /// fused multiply-add. Every input of element i is read before any output of element i is written.
    /// </summary>
    private static void AdamKernel<T>(in AdamScalars s, CpuStorage[] all, int offset, int length) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var param = all[0].AsSpan<T>().Slice(offset, length);
        var grad = all[1].AsSpan<T>().Slice(offset, length);
        var m = all[2].AsSpan<T>().Slice(offset, length);
        var v = all[3].AsSpan<T>().Slice(offset, length);
        int o = s.Amsgrad ? 5 : 4;
        var vmax = s.Amsgrad ? all[4].AsSpan<T>().Slice(offset, length) : default;
        var pOut = all[o].AsSpan<T>().Slice(offset, length);
        var mOut = all[o + 1].AsSpan<T>().Slice(offset, length);
        var vOut = all[o + 2].AsSpan<T>().Slice(offset, length);
        var vmaxOut = s.Amsgrad ? all[8].AsSpan<T>().Slice(offset, length) : default;
        static T C(double x) => T.CreateTruncating(x);
        T zero = T.Zero, one = T.One, minusOne = C(-1);
        bool decay = s.WeightDecay != 0;
        bool decoupled = s.Decoupled && decay, coupled = !s.Decoupled && decay;
        T wd = C(s.WeightDecay), keep = C(1 - (s.Lr * s.WeightDecay));
        T b1 = C(s.Beta1), rest1 = C(1 - s.Beta1), b2 = C(s.Beta2), rest2 = C(1 - s.Beta2);
        T correction = C(Math.Sqrt(1 - Math.Pow(s.Beta2, s.Step)));
        T eps = C(s.Eps), stepSize = C(s.Lr / (1 - Math.Pow(s.Beta1, s.Step)));
        for (int i = 0; i < param.Length; i++)
        {
            T g = grad[i], p = param[i], mi = m[i], vi = v[i];
            T previousMax = s.Amsgrad ? vmax[i] : zero;
            if (s.Maximize)
            {
                g = (minusOne * g) + zero;
            }
            if (decoupled)
            {
                p = (keep * p) + zero;
            }
            else if (coupled)
            {
                g = g + ((wd * p) + zero);
            }
            T mNew = ((b1 * mi) + zero) + ((rest1 * g) + zero);
            T vNew = ((b2 * vi) + zero) + (((rest2 * g) + zero) * g);
            mOut[i] = mNew;
            vOut[i] = vNew;
            if (s.Amsgrad)
            {
                vNew = T.Max(previousMax, vNew);
                vmaxOut[i] = vNew;
            }
            T denom = (one * (T.Sqrt(vNew) / correction)) + eps;
            pOut[i] = p - (((stepSize * mNew) + zero) / denom);
        }
    }

    /// <inheritdoc/>
    public void Compare(CompareOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        var sa = Cpu(a);
        var sb = Cpu(b);
        var sy = Cpu(y);
        SameDType(Names.Compare[(int)op], sa, sb);
        if (sy.DType != DType.Bool)
        {
            throw new ArgumentException($"Compare {op} writes a bool storage, got {sy.DType.Name()}.", nameof(y));
        }
        CheckBroadcast(Names.Compare[(int)op], sa, aShape, sb, bShape, sy, yShape);
        switch (sa.DType)
        {
            case DType.Float32: CompareTyped<float>(op, sa.AsFloat32(), aShape, sb.AsFloat32(), bShape, sy.AsBool(), yShape); break;
            case DType.Float64: CompareTyped<double>(op, sa.AsFloat64(), aShape, sb.AsFloat64(), bShape, sy.AsBool(), yShape); break;
            case DType.Int64: CompareTyped<long>(op, sa.AsInt64(), aShape, sb.AsInt64(), bShape, sy.AsBool(), yShape); break;
            default: throw Unsupported(Names.Compare[(int)op], sa.DType);
        }
    }

    private static void CompareTyped<T>(CompareOp op, ReadOnlySpan<T> a, Shape aShape, ReadOnlySpan<T> b, Shape bShape, Span<bool> y, Shape yShape)
        where T : unmanaged, INumber<T>
    {
        switch (op)
        {
            case CompareOp.Eq: BroadcastWalker.Walk2(a, aShape, b, bShape, y, yShape, new CompareKernel<T, EqOperator<T>>(default)); break;
            case CompareOp.Ne: BroadcastWalker.Walk2(a, aShape, b, bShape, y, yShape, new CompareKernel<T, NeOperator<T>>(default)); break;
            case CompareOp.Lt: BroadcastWalker.Walk2(a, aShape, b, bShape, y, yShape, new CompareKernel<T, LtOperator<T>>(default)); break;
            case CompareOp.Le: BroadcastWalker.Walk2(a, aShape, b, bShape, y, yShape, new CompareKernel<T, LeOperator<T>>(default)); break;
            case CompareOp.Gt: BroadcastWalker.Walk2(a, aShape, b, bShape, y, yShape, new CompareKernel<T, GtOperator<T>>(default)); break;
            case CompareOp.Ge: BroadcastWalker.Walk2(a, aShape, b, bShape, y, yShape, new CompareKernel<T, GeOperator<T>>(default)); break;
            default: throw new NotSupportedException($"Compare {op} is not supported by the reference backend.");
        }
    }

    // Its own method so that Where's serial path allocates no closure (see BinaryParallel).
    private void WhereParallel(CpuStorage sc, Shape conditionShape, CpuStorage sa, Shape aShape, CpuStorage sb, Shape bShape, CpuStorage sy, ElementwiseSplit split) =>
        _threads.For(0, split.Chunks, c =>
        {
            var (co, cl, csh) = split.Operand(c, conditionShape);
            var (ao, al, ash) = split.Operand(c, aShape);
            var (bo, bl, bsh) = split.Operand(c, bShape);
            var (yo, yl, ysh) = split.Output(c);
            ReadOnlySpan<bool> cs = sc.AsBool().Slice(co, cl);
            if (sa.DType == DType.Float32)
            {
                BroadcastWalker.Walk3(cs, csh, sa.AsFloat32().Slice(ao, al), ash, sb.AsFloat32().Slice(bo, bl), bsh, sy.AsFloat32().Slice(yo, yl), ysh, new WhereKernel<float>());
            }
            else
            {
                BroadcastWalker.Walk3(cs, csh, sa.AsFloat64().Slice(ao, al), ash, sb.AsFloat64().Slice(bo, bl), bsh, sy.AsFloat64().Slice(yo, yl), ysh, new WhereKernel<double>());
            }
        });

    /// <inheritdoc/>
    public void Where(IStorage condition, Shape conditionShape, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        var sc = Cpu(condition);
        var sa = Cpu(a);
        var sb = Cpu(b);
        var sy = Cpu(y);
        if (sc.DType != DType.Bool)
        {
            throw new ArgumentException($"Where needs a bool condition, got {sc.DType.Name()}.", nameof(condition));
        }
        SameDType("Where", sa, sb, sy);
        CheckBroadcast("Where", sa, aShape, sb, bShape, sy, yShape);
        Guard.Holds("Where", nameof(condition), sc, conditionShape);
        Guard.BroadcastsTo("Where", nameof(condition), conditionShape, yShape);
        if (sa.DType is DType.Float32 or DType.Float64 && ElementwiseSplit.TryPlan(_threads, yShape, out var split, conditionShape, aShape, bShape))
        {
            WhereParallel(sc, conditionShape, sa, aShape, sb, bShape, sy, split);
            return;
        }
        switch (sa.DType)
        {
            case DType.Float32:
                BroadcastWalker.Walk3(sc.AsBool(), conditionShape, sa.AsFloat32(), aShape, sb.AsFloat32(), bShape, sy.AsFloat32(), yShape, new WhereKernel<float>());
                break;
            case DType.Float64:
                BroadcastWalker.Walk3(sc.AsBool(), conditionShape, sa.AsFloat64(), aShape, sb.AsFloat64(), bShape, sy.AsFloat64(), yShape, new WhereKernel<double>());
                break;
            case DType.Int64:
                BroadcastWalker.Walk3(sc.AsBool(), conditionShape, sa.AsInt64(), aShape, sb.AsInt64(), bShape, sy.AsInt64(), yShape, new WhereKernel<long>());
                break;
            default:
                BroadcastWalker.Walk3(sc.AsBool(), conditionShape, sa.AsBool(), aShape, sb.AsBool(), bShape, sy.AsBool(), yShape, new WhereKernel<bool>());
                break;
        }
    }

    /// <inheritdoc/>
    public void Reduce(ReduceOp op, IStorage x, Shape xShape, ReadOnlySpan<bool> reduceAxes, IStorage y)
    {
        var sx = Cpu(x);
        var sy = Cpu(y);
        SameDType(Names.Reduce[(int)op], sx, sy);
        if (reduceAxes.Length != xShape.Rank)
        {
            throw new ArgumentException($"Reduce {op} got {reduceAxes.Length} axis flags for shape {xShape}.", nameof(reduceAxes));
        }
        Guard.Holds(Names.Reduce[(int)op], nameof(x), sx, xShape);
        long kept = 1;
        for (int d = 0; d < xShape.Rank; d++)
        {
            kept *= reduceAxes[d] ? 1 : xShape[d];
        }
        Guard.Holds(Names.Reduce[(int)op], nameof(y), sy, kept);
        switch (sx.DType)
        {
            case DType.Float32: Reducers.Reduce<float>(_threads, op, sx.AsFloat32(), xShape, reduceAxes, sy.AsFloat32()); break;
            case DType.Float64: Reducers.Reduce<double>(_threads, op, sx.AsFloat64(), xShape, reduceAxes, sy.AsFloat64()); break;
            default: throw Unsupported(Names.Reduce[(int)op], sx.DType);
        }
    }

    /// <inheritdoc/>
    public void ArgReduce(ReduceOp op, IStorage x, int outer, int size, int inner, IStorage values, IStorage indices)
    {
        var sx = Cpu(x);
        var sv = Cpu(values);
        var si = Cpu(indices);
        SameDType(Names.ArgReduce[(int)op], sx, sv);
        if (op == ReduceOp.Sum)
        {
            throw new NotSupportedException("ArgReduce supports Max and Min, not Sum.");
        }
        switch (sx.DType)
        {
            case DType.Float32: Reducers.ArgReduce<float>(op, sx.AsFloat32(), outer, size, inner, sv.AsFloat32(), si.AsInt64()); break;
            case DType.Float64: Reducers.ArgReduce<double>(op, sx.AsFloat64(), outer, size, inner, sv.AsFloat64(), si.AsInt64()); break;
            case DType.Int64: Reducers.ArgReduce<long>(op, sx.AsInt64(), outer, size, inner, sv.AsInt64(), si.AsInt64()); break;
            default: throw Unsupported(Names.ArgReduce[(int)op], sx.DType);
        }
    }

    /// <inheritdoc/>
    public unsafe void Gemm(bool transposeA, bool transposeB, int batch, int m, int n, int k, double alpha,
        IStorage a, long strideA, IStorage b, long strideB, double beta, IStorage c, long strideC)
    {
        var sa = Cpu(a);
        var sb = Cpu(b);
        var sc = Cpu(c);
        SameDType("Gemm", sa, sb, sc);
        Guard.MatricesWithin(nameof(a), sa, batch, strideA, (long)m * k);
        Guard.MatricesWithin(nameof(b), sb, batch, strideB, (long)k * n);
        Guard.MatricesWithin(nameof(c), sc, batch, strideC, (long)m * n);
        switch (sa.DType)
        {
            case DType.Float32:
                fixed (float* pa = sa.AsFloat32(), pb = sb.AsFloat32(), pc = sc.AsFloat32())
                {
                    Reference.Gemm.Run(_threads, transposeA, transposeB, batch, m, n, k, alpha, pa, strideA, pb, strideB, beta, pc, strideC);
                }
                break;
            case DType.Float64:
                fixed (double* pa = sa.AsFloat64(), pb = sb.AsFloat64(), pc = sc.AsFloat64())
                {
                    Reference.Gemm.Run(_threads, transposeA, transposeB, batch, m, n, k, alpha, pa, strideA, pb, strideB, beta, pc, strideC);
                }
                break;
            default:
                throw Unsupported("Gemm", sa.DType);
        }
    }

    /// <inheritdoc/>
    public void Gather(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y)
    {
        var sx = Cpu(x);
        var si = Index(index, "Gather");
        var sy = Cpu(y);
        SameDType("Gather", sx, sy);
        switch (sx.DType)
        {
            case DType.Float32: Indexing.Gather<float>(_threads, sx.AsFloat32(), outer, xSize, inner, si, indexSize, sy.AsFloat32()); break;
            case DType.Float64: Indexing.Gather<double>(_threads, sx.AsFloat64(), outer, xSize, inner, si, indexSize, sy.AsFloat64()); break;
            case DType.Int64: Indexing.Gather<long>(_threads, sx.AsInt64(), outer, xSize, inner, si, indexSize, sy.AsInt64()); break;
            default: Indexing.Gather<bool>(_threads, sx.AsBool(), outer, xSize, inner, si, indexSize, sy.AsBool()); break;
        }
    }

    /// <inheritdoc/>
    public void ScatterAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) =>
        Scatter("ScatterAdd", destination, outer, destinationSize, inner, index, indexSize, source, clear: false);

    /// <inheritdoc/>
    public void ScatterAddIntoZeros(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) =>
        Scatter("ScatterAddIntoZeros", destination, outer, destinationSize, inner, index, indexSize, source, clear: true);

    private void Scatter(string op, IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source, bool clear)
    {
        var sd = Cpu(destination);
        var si = Index(index, op);
        var ss = Cpu(source);
        SameDType(op, sd, ss);
        switch (sd.DType)
        {
            case DType.Float32: Indexing.ScatterAdd<float>(_threads, sd.AsFloat32(), outer, destinationSize, inner, si, indexSize, ss.AsFloat32(), clear); break;
            case DType.Float64: Indexing.ScatterAdd<double>(_threads, sd.AsFloat64(), outer, destinationSize, inner, si, indexSize, ss.AsFloat64(), clear); break;
            case DType.Int64: Indexing.ScatterAdd<long>(_threads, sd.AsInt64(), outer, destinationSize, inner, si, indexSize, ss.AsInt64(), clear); break;
            default: throw Unsupported(op, sd.DType);
        }
    }

    /// <inheritdoc/>
    public void IndexSelect(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y)
    {
        var sx = Cpu(x);
        var si = Index(index, "IndexSelect");
        var sy = Cpu(y);
        SameDType("IndexSelect", sx, sy);
        switch (sx.DType)
        {
            case DType.Float32: Indexing.IndexSelect<float>(sx.AsFloat32(), outer, xSize, inner, si, indexSize, sy.AsFloat32()); break;
            case DType.Float64: Indexing.IndexSelect<double>(sx.AsFloat64(), outer, xSize, inner, si, indexSize, sy.AsFloat64()); break;
            case DType.Int64: Indexing.IndexSelect<long>(sx.AsInt64(), outer, xSize, inner, si, indexSize, sy.AsInt64()); break;
            default: Indexing.IndexSelect<bool>(sx.AsBool(), outer, xSize, inner, si, indexSize, sy.AsBool()); break;
        }
    }

    /// <inheritdoc/>
    public void IndexAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source)
    {
        var sd = Cpu(destination);
        var si = Index(index, "IndexAdd");
        var ss = Cpu(source);
        SameDType("IndexAdd", sd, ss);
        switch (sd.DType)
        {
            case DType.Float32: Indexing.IndexAdd<float>(sd.AsFloat32(), outer, destinationSize, inner, si, indexSize, ss.AsFloat32()); break;
            case DType.Float64: Indexing.IndexAdd<double>(sd.AsFloat64(), outer, destinationSize, inner, si, indexSize, ss.AsFloat64()); break;
            case DType.Int64: Indexing.IndexAdd<long>(sd.AsInt64(), outer, destinationSize, inner, si, indexSize, ss.AsInt64()); break;
            default: throw Unsupported("IndexAdd", sd.DType);
        }
    }

    /// <inheritdoc/>
    public unsafe void Conv2d(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage y) =>
        Conv("Conv2d", geometry, x, geometry.InputLength, weight, geometry.WeightLength, y, geometry.OutputLength,
            &Convolution.Forward<float>, &Convolution.Forward<double>);

    /// <inheritdoc/>
    public unsafe void Conv2dBias(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage bias, IStorage y)
    {
        const string op = "Conv2dBias";
        var (sx, sw, sy) = ConvOperands(op, geometry, x, geometry.InputLength, weight, geometry.WeightLength, y, geometry.OutputLength, nameof(x), nameof(weight), nameof(y));
        var sb = Cpu(bias);
        SameDType(op, sx, sb);
        Guard.Holds(op, nameof(bias), sb, geometry.OutChannels);
        if (sx.DType == DType.Float32)
        {
            fixed (float* px = sx.AsFloat32(), pw = sw.AsFloat32(), pb = sb.AsFloat32(), py = sy.AsFloat32())
            {
                Convolution.Forward(_threads, geometry, px, pw, py, ConvPath.Auto, pb);
            }
        }
        else
        {
            fixed (double* px = sx.AsFloat64(), pw = sw.AsFloat64(), pb = sb.AsFloat64(), py = sy.AsFloat64())
            {
                Convolution.Forward(_threads, geometry, px, pw, py, ConvPath.Auto, pb);
            }
        }
    }

    /// <inheritdoc/>
    public unsafe void Conv2dInputGrad(in ConvGeometry geometry, IStorage gradY, IStorage weight, IStorage gradX) =>
        Conv("Conv2dInputGrad", geometry, gradY, geometry.OutputLength, weight, geometry.WeightLength, gradX, geometry.InputLength,
            &Convolution.InputGrad<float>, &Convolution.InputGrad<double>);

    /// <inheritdoc/>
    public unsafe void Conv2dWeightGrad(in ConvGeometry geometry, IStorage x, IStorage gradY, IStorage gradWeight) =>
        Conv("Conv2dWeightGrad", geometry, x, geometry.InputLength, gradY, geometry.OutputLength, gradWeight, geometry.WeightLength,
            &Convolution.WeightGrad<float>, &Convolution.WeightGrad<double>);

    /// <summary>The three convolution kernels: checked operands a, b and output c, then the float32 or float64 kernel on their arrays.</summary>
    private unsafe void Conv(string op, in ConvGeometry geometry, IStorage a, long aLength, IStorage b, long bLength, IStorage c, long cLength,
        delegate*<Parallelism, ConvGeometry, float*, float*, float*, void> kernel32,
        delegate*<Parallelism, ConvGeometry, double*, double*, double*, void> kernel64,
        [CallerArgumentExpression(nameof(a))] string aName = "", [CallerArgumentExpression(nameof(b))] string bName = "",
        [CallerArgumentExpression(nameof(c))] string cName = "")
    {
        var (sa, sb, sc) = ConvOperands(op, geometry, a, aLength, b, bLength, c, cLength, aName, bName, cName);
        if (sa.DType == DType.Float32)
        {
            fixed (float* pa = sa.AsFloat32(), pb = sb.AsFloat32(), pc = sc.AsFloat32())
            {
                kernel32(_threads, geometry, pa, pb, pc);
            }
        }
        else
        {
            fixed (double* pa = sa.AsFloat64(), pb = sb.AsFloat64(), pc = sc.AsFloat64())
            {
                kernel64(_threads, geometry, pa, pb, pc);
            }
        }
    }

    /// <inheritdoc/>
    public unsafe void BatchNorm(in NormGeometry geometry, IStorage x, IStorage weight, IStorage bias, IStorage y, IStorage mean, IStorage variance)
    {
        const string op = "BatchNorm";
        var sx = NormInput(op, geometry, x);
        var sy = NormOperand(op, sx, y, geometry.Length);
        var (sw, sb, sm, sv) = (NormOperand(op, sx, weight, geometry.Channels), NormOperand(op, sx, bias, geometry.Channels),
            NormOperand(op, sx, mean, geometry.Channels), NormOperand(op, sx, variance, geometry.Channels));
        if (sx.DType == DType.Float32)
        {
            fixed (float* px = sx.AsFloat32(), pw = sw.AsFloat32(), pb = sb.AsFloat32(), py = sy.AsFloat32(), pm = sm.AsFloat32(), pr = sv.AsFloat32())
            {
                BatchNormKernels.Forward(_threads, geometry, px, pw, pb, py, pm, pr);
            }
            return;
        }
        fixed (double* px = sx.AsFloat64(), pw = sw.AsFloat64(), pb = sb.AsFloat64(), py = sy.AsFloat64(), pm = sm.AsFloat64(), pr = sv.AsFloat64())
        {
            BatchNormKernels.Forward(_threads, geometry, px, pw, pb, py, pm, pr);
        }
    }

    /// <inheritdoc/>
    public unsafe void BatchNormInputGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight, IStorage gradX)
    {
        const string op = "BatchNormInputGrad";
        var sx = NormInput(op, geometry, x);
        var (sg, sgx) = (NormOperand(op, sx, gradY, geometry.Length), NormOperand(op, sx, gradX, geometry.Length));
        var (sm, sv, sw) = (NormOperand(op, sx, mean, geometry.Channels), NormOperand(op, sx, variance, geometry.Channels), NormOperand(op, sx, weight, geometry.Channels));
        if (sx.DType == DType.Float32)
        {
            fixed (float* pg = sg.AsFloat32(), px = sx.AsFloat32(), pm = sm.AsFloat32(), pr = sv.AsFloat32(), pw = sw.AsFloat32(), po = sgx.AsFloat32())
            {
                BatchNormKernels.InputGrad(_threads, geometry, pg, px, pm, pr, pw, po);
            }
            return;
        }
        fixed (double* pg = sg.AsFloat64(), px = sx.AsFloat64(), pm = sm.AsFloat64(), pr = sv.AsFloat64(), pw = sw.AsFloat64(), po = sgx.AsFloat64())
        {
            BatchNormKernels.InputGrad(_threads, geometry, pg, px, pm, pr, pw, po);
        }
    }

    /// <inheritdoc/>
    public unsafe void BatchNormWeightGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage gradWeight)
    {
        const string op = "BatchNormWeightGrad";
        var sx = NormInput(op, geometry, x);
        var sg = NormOperand(op, sx, gradY, geometry.Length);
        var (sm, sv, sgw) = (NormOperand(op, sx, mean, geometry.Channels), NormOperand(op, sx, variance, geometry.Channels), NormOperand(op, sx, gradWeight, geometry.Channels));
        if (sx.DType == DType.Float32)
        {
            fixed (float* pg = sg.AsFloat32(), px = sx.AsFloat32(), pm = sm.AsFloat32(), pr = sv.AsFloat32(), po = sgw.AsFloat32())
            {
                BatchNormKernels.WeightGrad(_threads, geometry, pg, px, pm, pr, po);
            }
            return;
        }
        fixed (double* pg = sg.AsFloat64(), px = sx.AsFloat64(), pm = sm.AsFloat64(), pr = sv.AsFloat64(), po = sgw.AsFloat64())
        {
            BatchNormKernels.WeightGrad(_threads, geometry, pg, px, pm, pr, po);
        }
    }

    /// <inheritdoc/>
    public unsafe void BatchNormInputGradBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradX, IStorage gradWeight)
    {
        const string op = "BatchNormInputGradBackward";
        var sx = NormInput(op, geometry, x);
        var (sg, sh, sgx) = (NormOperand(op, sx, gradY, geometry.Length), NormOperand(op, sx, h, geometry.Length), NormOperand(op, sx, gradX, geometry.Length));
        var (sm, sv, sw, sgw) = (NormOperand(op, sx, mean, geometry.Channels), NormOperand(op, sx, variance, geometry.Channels),
            NormOperand(op, sx, weight, geometry.Channels), NormOperand(op, sx, gradWeight, geometry.Channels));
        if (sx.DType == DType.Float32)
        {
            fixed (float* pg = sg.AsFloat32(), px = sx.AsFloat32(), pm = sm.AsFloat32(), pr = sv.AsFloat32(), pw = sw.AsFloat32(), ph = sh.AsFloat32(),
                po = sgx.AsFloat32(), pow = sgw.AsFloat32())
            {
                BatchNormKernels.InputGradBackward(_threads, geometry, pg, px, pm, pr, pw, ph, po, pow);
            }
            return;
        }
        fixed (double* pg = sg.AsFloat64(), px = sx.AsFloat64(), pm = sm.AsFloat64(), pr = sv.AsFloat64(), pw = sw.AsFloat64(), ph = sh.AsFloat64(),
            po = sgx.AsFloat64(), pow = sgw.AsFloat64())
        {
            BatchNormKernels.InputGradBackward(_threads, geometry, pg, px, pm, pr, pw, ph, po, pow);
        }
    }

    /// <inheritdoc/>
    public unsafe void BatchNormBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage gradX, IStorage? gradWeight, IStorage? scaledNormalized, NormAccumulate accumulate = NormAccumulate.None,
        IStorage? gradYSums = null, IStorage? gradXSums = null, IStorage? scaledNormalizedBias = null)
    {
        const string op = "BatchNormBackward";
        var sx = NormInput(op, geometry, x);
        if (scaledNormalizedBias is not null && scaledNormalized is null)
        {
            throw new ArgumentException($"{op}: scaledNormalizedBias is given without scaledNormalized.");
        }
        var sxb = scaledNormalizedBias is null ? null : NormOperand(op, sx, scaledNormalizedBias, geometry.Channels);
        var (sg, sgx) = (NormOperand(op, sx, gradY, geometry.Length), NormOperand(op, sx, gradX, geometry.Length));
        var (sm, sv, sw) = (NormOperand(op, sx, mean, geometry.Channels), NormOperand(op, sx, variance, geometry.Channels), NormOperand(op, sx, weight, geometry.Channels));
        var sgw = gradWeight is null ? null : NormOperand(op, sx, gradWeight, geometry.Channels);
        var sxw = scaledNormalized is null ? null : NormOperand(op, sx, scaledNormalized, geometry.Length);
        var sys = gradYSums is null ? null : NormOperand(op, sx, gradYSums, geometry.Channels);
        var sxs = gradXSums is null ? null : NormOperand(op, sx, gradXSums, geometry.Channels);
        // The kernel sums each channel as Reduce does for three axis groups; a size-1 axis merges groups there (another order).
        bool inKernel = BatchNormKernels.SumsLikeReduce(geometry);
        var (ys, xs) = inKernel ? (sys, sxs) : (null, null);
        if (sx.DType == DType.Float32)
        {
            fixed (float* pg = sg.AsFloat32(), px = sx.AsFloat32(), pm = sm.AsFloat32(), pr = sv.AsFloat32(), pw = sw.AsFloat32(), po = sgx.AsFloat32(),
                pgw = sgw is null ? default : sgw.AsFloat32(), pxw = sxw is null ? default : sxw.AsFloat32(),
                pys = ys is null ? default : ys.AsFloat32(), pxs = xs is null ? default : xs.AsFloat32(), pxb = sxb is null ? default : sxb.AsFloat32())
            {
                BatchNormKernels.Backward(_threads, geometry, pg, px, pm, pr, pw, po, pgw, pxw, accumulate, pys, pxs, pxb);
            }
        }
        else
        {
            fixed (double* pg = sg.AsFloat64(), px = sx.AsFloat64(), pm = sm.AsFloat64(), pr = sv.AsFloat64(), pw = sw.AsFloat64(), po = sgx.AsFloat64(),
                pgw = sgw is null ? default : sgw.AsFloat64(), pxw = sxw is null ? default : sxw.AsFloat64(),
                pys = ys is null ? default : ys.AsFloat64(), pxs = xs is null ? default : xs.AsFloat64(), pxb = sxb is null ? default : sxb.AsFloat64())
            {
                BatchNormKernels.Backward(_threads, geometry, pg, px, pm, pr, pw, po, pgw, pxw, accumulate, pys, pxs, pxb);
            }
        }
        if (!inKernel)
        {
            ComposedKernels.ChannelSums(this, geometry, gradY, gradYSums);
            ComposedKernels.ChannelSums(this, geometry, gradX, gradXSums);
        }
    }

    /// <inheritdoc/>
    public unsafe void BatchNormDoubleBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradGradY, IStorage gradX, IStorage gradWeight, NormAccumulate accumulate = NormAccumulate.None)
    {
        const string op = "BatchNormDoubleBackward";
        var sx = NormInput(op, geometry, x);
        var (sg, sh, sgx, sgg) = (NormOperand(op, sx, gradY, geometry.Length), NormOperand(op, sx, h, geometry.Length), NormOperand(op, sx, gradX, geometry.Length),
            NormOperand(op, sx, gradGradY, geometry.Length));
        var (sm, sv, sw, sgw) = (NormOperand(op, sx, mean, geometry.Channels), NormOperand(op, sx, variance, geometry.Channels),
            NormOperand(op, sx, weight, geometry.Channels), NormOperand(op, sx, gradWeight, geometry.Channels));
        if (sx.DType == DType.Float32)
        {
            fixed (float* pg = sg.AsFloat32(), px = sx.AsFloat32(), pm = sm.AsFloat32(), pr = sv.AsFloat32(), pw = sw.AsFloat32(), ph = sh.AsFloat32(),
                po = sgx.AsFloat32(), pow = sgw.AsFloat32(), pgg = sgg.AsFloat32())
            {
                BatchNormKernels.InputGradBackward(_threads, geometry, pg, px, pm, pr, pw, ph, po, pow, pgg, accumulate);
            }
            return;
        }
        fixed (double* pg = sg.AsFloat64(), px = sx.AsFloat64(), pm = sm.AsFloat64(), pr = sv.AsFloat64(), pw = sw.AsFloat64(), ph = sh.AsFloat64(),
            po = sgx.AsFloat64(), pow = sgw.AsFloat64(), pgg = sgg.AsFloat64())
        {
            BatchNormKernels.InputGradBackward(_threads, geometry, pg, px, pm, pr, pw, ph, po, pow, pgg, accumulate);
        }
    }

    /// <summary>x of a batch-norm kernel: a valid geometry, a float storage holding N·C·S elements.</summary>
    private static CpuStorage NormInput(string op, in NormGeometry geometry, IStorage x, [CallerArgumentExpression(nameof(x))] string name = "")
    {
        geometry.Validate(op);
        var sx = Cpu(x);
        RequireFloat(op, sx);
        Guard.Holds(op, name, sx, geometry.Length);
        return sx;
    }

    /// <summary>Another operand of a batch-norm kernel: <paramref name="like"/>'s dtype, holding <paramref name="length"/> elements (N·C·S, or C).</summary>
    private static CpuStorage NormOperand(string op, CpuStorage like, IStorage v, long length, [CallerArgumentExpression(nameof(v))] string name = "")
    {
        var sv = Cpu(v);
        SameDType(op, like, sv);
        Guard.Holds(op, name, sv, length);
        return sv;
    }

    /// <inheritdoc/>
    public unsafe void MaxPool2d(in PoolGeometry geometry, IStorage x, IStorage y, IStorage indices)
    {
        const string op = "MaxPool2d";
        var sx = Cpu(x);
        var sy = Cpu(y);
        var si = Cpu(indices);
        SameDType(op, sx, sy);
        RequireFloat(op, sx);
        if (si.DType != DType.Int64)
        {
            throw new ArgumentException($"{op} writes int64 indices, got {si.DType.Name()}.", nameof(indices));
        }
        WindowChecks.Validate(op, geometry, average: false);
        Guard.Holds(op, nameof(x), sx, geometry.InputLength);
        Guard.Holds(op, nameof(y), sy, geometry.OutputLength);
        Guard.Holds(op, nameof(indices), si, geometry.OutputLength);
        fixed (long* pi = si.AsInt64())
        {
            switch (sx.DType)
            {
                case DType.Float32:
                    fixed (float* px = sx.AsFloat32(), py = sy.AsFloat32())
                    {
                        Pooling.MaxPool(_threads, geometry, px, py, pi);
                    }
                    break;
                default:
                    fixed (double* px = sx.AsFloat64(), py = sy.AsFloat64())
                    {
                        Pooling.MaxPool(_threads, geometry, px, py, pi);
                    }
                    break;
            }
        }
    }

    /// <inheritdoc/>
    public unsafe void AvgPool2d(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage x, IStorage y)
    {
        var (sx, sy) = PoolOperands("AvgPool2d", geometry, x, geometry.InputLength, y, geometry.OutputLength);
        switch (sx.DType)
        {
            case DType.Float32:
                fixed (float* px = sx.AsFloat32(), py = sy.AsFloat32())
                {
                    Pooling.AvgPool(_threads, geometry, countIncludePad, divisorOverride, px, py);
                }
                break;
            default:
                fixed (double* px = sx.AsFloat64(), py = sy.AsFloat64())
                {
                    Pooling.AvgPool(_threads, geometry, countIncludePad, divisorOverride, px, py);
                }
                break;
        }
    }

    /// <inheritdoc/>
    public unsafe void AvgPool2dGrad(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage gradY, IStorage gradX)
    {
        var (sdy, sdx) = PoolOperands("AvgPool2dGrad", geometry, gradY, geometry.OutputLength, gradX, geometry.InputLength);
        switch (sdy.DType)
        {
            case DType.Float32:
                fixed (float* pdy = sdy.AsFloat32(), pdx = sdx.AsFloat32())
                {
                    Pooling.AvgPoolGrad(_threads, geometry, countIncludePad, divisorOverride, pdy, pdx);
                }
                break;
            default:
                fixed (double* pdy = sdy.AsFloat64(), pdx = sdx.AsFloat64())
                {
                    Pooling.AvgPoolGrad(_threads, geometry, countIncludePad, divisorOverride, pdy, pdx);
                }
                break;
        }
    }

    /// <inheritdoc/>
    public unsafe void AdaptiveAvgPool2d(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage x, IStorage y)
    {
        var (sx, sy) = AdaptiveOperands("AdaptiveAvgPool2d", planes, inHeight, inWidth, outHeight, outWidth, x, (long)inHeight * inWidth, y, (long)outHeight * outWidth);
        if ((long)planes * outHeight * outWidth == 0)
        {
            return;
        }
        switch (sx.DType)
        {
            case DType.Float32:
                fixed (float* px = sx.AsFloat32(), py = sy.AsFloat32())
                {
                    Pooling.AdaptiveAvgPool(_threads, planes, inHeight, inWidth, outHeight, outWidth, px, py);
                }
                break;
            default:
                fixed (double* px = sx.AsFloat64(), py = sy.AsFloat64())
                {
                    Pooling.AdaptiveAvgPool(_threads, planes, inHeight, inWidth, outHeight, outWidth, px, py);
                }
                break;
        }
    }

    /// <inheritdoc/>
    public unsafe void AdaptiveAvgPool2dGrad(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage gradY, IStorage gradX)
    {
        var (sdy, sdx) = AdaptiveOperands("AdaptiveAvgPool2dGrad", planes, inHeight, inWidth, outHeight, outWidth, gradY, (long)outHeight * outWidth, gradX, (long)inHeight * inWidth);
        long inputs = (long)planes * inHeight * inWidth;
        if (inputs == 0)
        {
            return;
        }
        if (outHeight == 0 || outWidth == 0)
        {
            Copying.Fill(sdx, 0);
            return;
        }
        switch (sdy.DType)
        {
            case DType.Float32:
                fixed (float* pdy = sdy.AsFloat32(), pdx = sdx.AsFloat32())
                {
                    Pooling.AdaptiveAvgPoolGrad(_threads, planes, inHeight, inWidth, outHeight, outWidth, pdy, pdx);
                }
                break;
            default:
                fixed (double* pdy = sdy.AsFloat64(), pdx = sdx.AsFloat64())
                {
                    Pooling.AdaptiveAvgPoolGrad(_threads, planes, inHeight, inWidth, outHeight, outWidth, pdy, pdx);
                }
                break;
        }
    }

    private static (CpuStorage A, CpuStorage B, CpuStorage C) ConvOperands(string op, in ConvGeometry geometry,
        IStorage a, long aLength, IStorage b, long bLength, IStorage c, long cLength, [CallerArgumentExpression(nameof(a))] string aName = "",
        [CallerArgumentExpression(nameof(b))] string bName = "", [CallerArgumentExpression(nameof(c))] string cName = "")
    {
        var sa = Cpu(a);
        var sb = Cpu(b);
        var sc = Cpu(c);
        SameDType(op, sa, sb, sc);
        RequireFloat(op, sa);
        WindowChecks.Validate(op, geometry);
        Guard.Holds(op, aName, sa, aLength);
        Guard.Holds(op, bName, sb, bLength);
        Guard.Holds(op, cName, sc, cLength);
        return (sa, sb, sc);
    }

    private static (CpuStorage A, CpuStorage B) PoolOperands(string op, in PoolGeometry geometry, IStorage a, long aLength, IStorage b, long bLength,
        [CallerArgumentExpression(nameof(a))] string aName = "", [CallerArgumentExpression(nameof(b))] string bName = "")
    {
        var sa = Cpu(a);
        var sb = Cpu(b);
        SameDType(op, sa, sb);
        RequireFloat(op, sa);
        WindowChecks.Validate(op, geometry, average: true);
        Guard.Holds(op, aName, sa, aLength);
        Guard.Holds(op, bName, sb, bLength);
        return (sa, sb);
    }

    private static (CpuStorage A, CpuStorage B) AdaptiveOperands(string op, int planes, int inHeight, int inWidth, int outHeight, int outWidth,
        IStorage a, long aPlane, IStorage b, long bPlane,
        [CallerArgumentExpression(nameof(a))] string aName = "", [CallerArgumentExpression(nameof(b))] string bName = "")
    {
        var sa = Cpu(a);
        var sb = Cpu(b);
        SameDType(op, sa, sb);
        RequireFloat(op, sa);
        WindowChecks.ValidateAdaptive(op, planes, inHeight, inWidth, outHeight, outWidth);
        Guard.Holds(op, aName, sa, planes * aPlane);
        Guard.Holds(op, bName, sb, planes * bPlane);
        return (sa, sb);
    }

    private static void RequireFloat(string op, CpuStorage s)
    {
        if (s.DType != DType.Float32 && s.DType != DType.Float64)
        {
            throw Unsupported(op, s.DType);
        }
    }

    /// <inheritdoc/>
    public void Random(IStorage destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b)
    {
        var sd = Cpu(destination);
        switch (sd.DType)
        {
            case DType.Float32: RandomFill.Fill<float>(_threads, sd.AsFloat32(), distribution, seed, offset, a, b); break;
            case DType.Float64: RandomFill.Fill<double>(_threads, sd.AsFloat64(), distribution, seed, offset, a, b); break;
            default: throw Unsupported($"Random {distribution}", sd.DType);
        }
    }

    private static void CheckBroadcast(string op, CpuStorage a, Shape aShape, CpuStorage b, Shape bShape, CpuStorage y, Shape yShape)
    {
        Guard.Holds(op, nameof(a), a, aShape);
        Guard.Holds(op, nameof(b), b, bShape);
        Guard.Holds(op, nameof(y), y, yShape);
        Guard.BroadcastsTo(op, nameof(a), aShape, yShape);
        Guard.BroadcastsTo(op, nameof(b), bShape, yShape);
    }

    private static CpuStorage Cpu(IStorage storage) => storage switch
    {
        CpuStorage s => s,
        null => throw new ArgumentNullException(nameof(storage)),
        _ => throw new ArgumentException($"The reference backend cannot use a storage of {storage.Device} ({storage.GetType().Name}); copy it to the CPU first.", nameof(storage)),
    };

    private static ReadOnlySpan<long> Index(IStorage storage, string op)
    {
        var s = Cpu(storage);
        return s.DType == DType.Int64 ? s.AsInt64() : throw new ArgumentException($"{op} needs an int64 index, got {s.DType.Name()}.", nameof(storage));
    }

    private static void SameDType(string op, CpuStorage first, params ReadOnlySpan<CpuStorage> others)
    {
        foreach (var o in others)
        {
            if (o.DType != first.DType)
            {
                throw new ArgumentException($"{op} needs operands of one dtype, got {first.DType.Name()} and {o.DType.Name()}.");
            }
        }
    }

    private static void CheckElementType<T>(DType dtype, string op)
    {
        Type expected = dtype switch
        {
            DType.Float32 => typeof(float),
            DType.Float64 => typeof(double),
            DType.Int64 => typeof(long),
            DType.Bool => typeof(bool),
            _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown dtype."),
        };
        if (typeof(T) != expected)
        {
            throw new ArgumentException($"{op} of a {dtype.Name()} storage needs {expected.Name} elements, got {typeof(T).Name}.");
        }
    }

    private static NotSupportedException Unsupported(string op, DType dtype) =>
        new($"{op} is not supported for {dtype.Name()} by the reference backend.");

    /// <summary>
    /// Operation names for messages, built once: the checks run on every kernel call, and formatting
    /// an enum into a new string each time cost more than adding two [10, 40] tensors.
    /// </summary>
    private static class Names
    {
        public static readonly string[] Unary = Build<UnaryOp>("Unary");
        public static readonly string[] Binary = Build<BinaryOp>("Binary");
        public static readonly string[] Compare = Build<CompareOp>("Compare");
        public static readonly string[] Reduce = Build<ReduceOp>("Reduce");
        public static readonly string[] ArgReduce = Build<ReduceOp>("ArgReduce");

        private static string[] Build<TEnum>(string kind) where TEnum : struct, Enum =>
            Enum.GetNames<TEnum>().Select(n => kind + " " + n).ToArray();
    }
}
