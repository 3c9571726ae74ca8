namespace Higher;

/// <summary>
/// A decorator that checks every kernel call's operands against <see cref="IBackend"/>'s contract
/// (storages of this device, dtypes, lengths against shapes and geometries, broadcastability, GEMM
/// extents, strided positions inside their storages, and index bounds) before forwarding it to the
/// backend it wraps. Backends trust their callers; this is how the tests prove that the engine
/// keeps that trust, on every backend alike. Every backend runs under it in the test suites and in
/// Debug builds (see <see cref="Backends.CheckKernelCalls"/>); it is also the tool for testing a
/// new backend. A violation throws <see cref="ArgumentException"/> naming the kernel, the operand and
/// what was wrong: "Checked reference.Binary(Add): b has shape [4] (4 elements) but its storage holds 3".
/// Index bounds are read back to the host, so it costs a round-trip per index kernel on a GPU.
/// </summary>
public sealed class CheckedBackend : IBackend
{
    /// <summary>Wraps <paramref name="inner"/>.</summary>
    public CheckedBackend(IBackend inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        Inner = inner is CheckedBackend c ? c.Inner : inner;
    }

    /// <summary>The backend that runs the kernels.</summary>
    public IBackend Inner { get; }

    /// <inheritdoc/>
    public string Name => Inner.Name;

    /// <inheritdoc/>
    public Device Device => Inner.Device;

    /// <inheritdoc/>
    public IStorage Allocate(DType dtype, long length)
    {
        NonNegative("Allocate", nameof(length), length);
        return Inner.Allocate(dtype, length);
    }

    /// <inheritdoc/>
    public IStorage AllocateUninitialized(DType dtype, long length)
    {
        NonNegative("AllocateUninitialized", nameof(length), length);
        return Inner.AllocateUninitialized(dtype, length);
    }

    /// <inheritdoc/>
    public IStorage Upload<T>(ReadOnlySpan<T> data, DType dtype) where T : unmanaged
    {
        ElementType<T>("Upload", "data", dtype);
        return Inner.Upload(data, dtype);
    }

    /// <inheritdoc/>
    public void Download<T>(IStorage source, Span<T> destination) where T : unmanaged
    {
        Own("Download", nameof(source), source);
        ElementType<T>("Download", nameof(source), source.DType);
        if (destination.Length != source.Length)
        {
            throw Fail("Download", $"destination has {destination.Length} elements but source holds {source.Length}");
        }
        Inner.Download(source, destination);
    }

    /// <inheritdoc/>
    public void Fill(IStorage destination, double value)
    {
        Own("Fill", nameof(destination), destination);
        Inner.Fill(destination, value);
    }

    /// <inheritdoc/>
    public void Cast(IStorage source, IStorage destination)
    {
        Own("Cast", nameof(source), source);
        Own("Cast", nameof(destination), destination);
        SameLength("Cast", source, destination);
        Inner.Cast(source, destination);
    }

    /// <inheritdoc/>
    public void StridedCopy(IStorage source, long sourceOffset, ReadOnlySpan<long> sourceStrides, IStorage destination, long destinationOffset,
        ReadOnlySpan<long> destinationStrides, Shape shape)
    {
        const string op = "StridedCopy";
        Own(op, nameof(source), source);
        Own(op, nameof(destination), destination);
        SameDType(op, "source", source, "destination", destination);
        Within(op, "source", source, sourceOffset, sourceStrides, shape);
        Within(op, "destination", destination, destinationOffset, destinationStrides, shape);
        Inner.StridedCopy(source, sourceOffset, sourceStrides, destination, destinationOffset, destinationStrides, shape);
    }

    /// <inheritdoc/>
    public void Unary(UnaryOp op, IStorage x, IStorage y, double alpha = 0, double beta = 0)
    {
        string name = $"Unary({op})";
        Own(name, nameof(x), x);
        Own(name, nameof(y), y);
        SameDType(name, "x", x, "y", y);
        SameLength(name, x, y);
        if (!x.DType.IsFloatingPoint() && !(op == UnaryOp.Affine && x.DType == DType.Int64))
        {
            throw Fail(name, $"x is {x.DType}, which this kernel does not take");
        }
        Inner.Unary(op, x, y, alpha, beta);
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        string name = $"Binary({op})";
        Elementwise(name, a, aShape, b, bShape, y, yShape);
        SameDType(name, "a", a, "b", b);
        SameDType(name, "a", a, "y", y);
        if (a.DType == DType.Bool)
        {
            throw Fail(name, "a and b are Bool, which arithmetic kernels do not take");
        }
        // y may be the very storage of a (an in-place update) only when a has y's shape; never of b.
        if (ReferenceEquals(y, b) || (ReferenceEquals(y, a) && aShape != yShape))
        {
            throw Fail(name, $"y aliases {(ReferenceEquals(y, b) ? "b" : $"a of shape {aShape}, which is not y's shape {yShape}")}");
        }
        Inner.Binary(op, a, aShape, b, bShape, y, yShape);
    }

    /// <inheritdoc/>
    public void AdamUpdate(in AdamScalars scalars, IStorage param, IStorage grad, IStorage expAvg, IStorage expAvgSq, IStorage? maxExpAvgSq,
        IStorage paramOut, IStorage expAvgOut, IStorage expAvgSqOut, IStorage? maxExpAvgSqOut)
    {
        const string name = "AdamUpdate";
        var inputs = new List<(string, IStorage)> { ("param", param), ("grad", grad), ("expAvg", expAvg), ("expAvgSq", expAvgSq) };
        var outputs = new List<(string, IStorage)> { ("paramOut", paramOut), ("expAvgOut", expAvgOut), ("expAvgSqOut", expAvgSqOut) };
        if (scalars.Amsgrad)
        {
            inputs.Add(("maxExpAvgSq", maxExpAvgSq ?? throw Fail(name, "AMSGrad without maxExpAvgSq")));
            outputs.Add(("maxExpAvgSqOut", maxExpAvgSqOut ?? throw Fail(name, "AMSGrad without maxExpAvgSqOut")));
        }
        if (!param.DType.IsFloatingPoint())
        {
            throw Fail(name, $"param is {param.DType}, which this kernel does not take");
        }
        foreach (var (n, t) in inputs.Concat(outputs))
        {
            Own(name, n, t);
            SameDType(name, "param", param, n, t);
            SameLength(name, "param", param, n, t);
        }
        foreach (var (o, t) in outputs)
        {
            foreach (var (n, u) in inputs.Concat(outputs))
            {
                if (!ReferenceEquals(o, n) && ReferenceEquals(t, u))
                {
                    throw Fail(name, $"{o} aliases {n}");
                }
            }
        }
        Inner.AdamUpdate(scalars, param, grad, expAvg, expAvgSq, maxExpAvgSq, paramOut, expAvgOut, expAvgSqOut, maxExpAvgSqOut);
    }

    /// <inheritdoc/>
    public void ScaledAdd(IStorage a, IStorage b, double alpha, IStorage y)
    {
        const string name = "ScaledAdd";
        Own(name, nameof(a), a);
        Own(name, nameof(b), b);
        Own(name, nameof(y), y);
        SameDType(name, "a", a, "b", b);
        SameDType(name, "a", a, "y", y);
        SameLength(name, "a", a, "b", b);
        SameLength(name, "a", a, "y", y);
        if (!a.DType.IsFloatingPoint())
        {
            throw Fail(name, $"a is {a.DType}, which this kernel does not take");
        }
        if (ReferenceEquals(y, b))
        {
            throw Fail(name, "y aliases b");
        }
        Inner.ScaledAdd(a, b, alpha, y);
    }

    /// <inheritdoc/>
    public void Compare(CompareOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        string name = $"Compare({op})";
        Elementwise(name, a, aShape, b, bShape, y, yShape);
        SameDType(name, "a", a, "b", b);
        IsDType(name, "y", y, DType.Bool);
        Inner.Compare(op, a, aShape, b, bShape, y, yShape);
    }

    /// <inheritdoc/>
    public void Where(IStorage condition, Shape conditionShape, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        const string op = "Where";
        Elementwise(op, a, aShape, b, bShape, y, yShape);
        Own(op, nameof(condition), condition);
        Holds(op, "condition", condition, conditionShape);
        BroadcastsTo(op, "condition", conditionShape, yShape);
        IsDType(op, "condition", condition, DType.Bool);
        SameDType(op, "a", a, "b", b);
        SameDType(op, "a", a, "y", y);
        Inner.Where(condition, conditionShape, a, aShape, b, bShape, y, yShape);
    }

    /// <inheritdoc/>
    public void Reduce(ReduceOp op, IStorage x, Shape xShape, ReadOnlySpan<bool> reduceAxes, IStorage y)
    {
        string name = $"Reduce({op})";
        Own(name, nameof(x), x);
        Own(name, nameof(y), y);
        Holds(name, "x", x, xShape);
        Float(name, "x", x);
        SameDType(name, "x", x, "y", y);
        if (reduceAxes.Length != xShape.Rank)
        {
            throw Fail(name, $"{reduceAxes.Length} axis flags for x of shape {xShape}");
        }
        long kept = 1;
        for (int d = 0; d < xShape.Rank; d++)
        {
            kept *= reduceAxes[d] ? 1 : xShape.Dims[d];
        }
        HoldsExactly(name, "y", y, kept);
        Inner.Reduce(op, x, xShape, reduceAxes, y);
    }

    /// <inheritdoc/>
    public void ArgReduce(ReduceOp op, IStorage x, int outer, int size, int inner, IStorage values, IStorage indices)
    {
        string name = $"ArgReduce({op})";
        Own(name, nameof(x), x);
        Own(name, nameof(values), values);
        Own(name, nameof(indices), indices);
        Positive(name, nameof(size), size);
        NonNegative(name, nameof(outer), outer);
        NonNegative(name, nameof(inner), inner);
        Holds(name, "x", x, (long)outer * size * inner);
        SameDType(name, "x", x, "values", values);
        IsDType(name, "indices", indices, DType.Int64);
        Holds(name, "values", values, (long)outer * inner);
        Holds(name, "indices", indices, (long)outer * inner);
        Inner.ArgReduce(op, x, outer, size, inner, values, indices);
    }

    /// <inheritdoc/>
    public void Gemm(bool transposeA, bool transposeB, int batch, int m, int n, int k, double alpha, IStorage a, long strideA, IStorage b, long strideB,
        double beta, IStorage c, long strideC)
    {
        const string op = "Gemm";
        Own(op, nameof(a), a);
        Own(op, nameof(b), b);
        Own(op, nameof(c), c);
        Float(op, "a", a);
        SameDType(op, "a", a, "b", b);
        SameDType(op, "a", a, "c", c);
        NonNegative(op, nameof(batch), batch);
        NonNegative(op, nameof(m), m);
        NonNegative(op, nameof(n), n);
        NonNegative(op, nameof(k), k);
        if (ReferenceEquals(c, a) || ReferenceEquals(c, b))
        {
            throw Fail(op, "c aliases an input");
        }
        if (batch > 0)
        {
            Extent(op, "a", a, batch, strideA, (long)m * k);
            Extent(op, "b", b, batch, strideB, (long)k * n);
            Extent(op, "c", c, batch, strideC, (long)m * n);
            if (strideC < (long)m * n && batch > 1)
            {
                throw Fail(op, $"c's batch stride {strideC} is below m·n = {(long)m * n}: batches would overlap");
            }
        }
        Inner.Gemm(transposeA, transposeB, batch, m, n, k, alpha, a, strideA, b, strideB, beta, c, strideC);
    }

    /// <inheritdoc/>
    public void Gather(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y)
    {
        IndexCall("Gather", x, outer, xSize, inner, index, indexSize, (long)outer * indexSize * inner, y, perElementIndex: true);
        Inner.Gather(x, outer, xSize, inner, index, indexSize, y);
    }

    /// <inheritdoc/>
    public void ScatterAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source)
    {
        IndexCall("ScatterAdd", destination, outer, destinationSize, inner, index, indexSize, (long)outer * indexSize * inner, source, perElementIndex: true);
        Inner.ScatterAdd(destination, outer, destinationSize, inner, index, indexSize, source);
    }

    /// <inheritdoc/>
    public void ScatterAddIntoZeros(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source)
    {
        IndexCall("ScatterAddIntoZeros", destination, outer, destinationSize, inner, index, indexSize, (long)outer * indexSize * inner, source, perElementIndex: true);
        Inner.ScatterAddIntoZeros(destination, outer, destinationSize, inner, index, indexSize, source);
    }

    /// <inheritdoc/>
    public void IndexSelect(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y)
    {
        IndexCall("IndexSelect", x, outer, xSize, inner, index, indexSize, (long)outer * indexSize * inner, y, perElementIndex: false);
        Inner.IndexSelect(x, outer, xSize, inner, index, indexSize, y);
    }

    /// <inheritdoc/>
    public void IndexAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source)
    {
        IndexCall("IndexAdd", destination, outer, destinationSize, inner, index, indexSize, (long)outer * indexSize * inner, source, perElementIndex: false);
        Inner.IndexAdd(destination, outer, destinationSize, inner, index, indexSize, source);
    }

    /// <inheritdoc/>
    public void Conv2d(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage y)
    {
        Conv("Conv2d", geometry, ("x", x, geometry.InputLength), ("weight", weight, geometry.WeightLength), ("y", y, geometry.OutputLength));
        Inner.Conv2d(geometry, x, weight, y);
    }

    /// <inheritdoc/>
    public void Conv2dBias(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage bias, IStorage y)
    {
        const string op = "Conv2dBias";
        Conv(op, geometry, ("x", x, geometry.InputLength), ("weight", weight, geometry.WeightLength), ("y", y, geometry.OutputLength));
        Own(op, "bias", bias);
        HoldsExactly(op, "bias", bias, geometry.OutChannels);
        SameDType(op, "x", x, "bias", bias);
        Inner.Conv2dBias(geometry, x, weight, bias, y);
    }

    /// <inheritdoc/>
    public void Conv2dInputGrad(in ConvGeometry geometry, IStorage gradY, IStorage weight, IStorage gradX)
    {
        Conv("Conv2dInputGrad", geometry, ("gradY", gradY, geometry.OutputLength), ("weight", weight, geometry.WeightLength), ("gradX", gradX, geometry.InputLength));
        Inner.Conv2dInputGrad(geometry, gradY, weight, gradX);
    }

    /// <inheritdoc/>
    public void Conv2dWeightGrad(in ConvGeometry geometry, IStorage x, IStorage gradY, IStorage gradWeight)
    {
        Conv("Conv2dWeightGrad", geometry, ("x", x, geometry.InputLength), ("gradY", gradY, geometry.OutputLength), ("gradWeight", gradWeight, geometry.WeightLength));
        Inner.Conv2dWeightGrad(geometry, x, gradY, gradWeight);
    }

    /// <inheritdoc/>
    public void BatchNorm(in NormGeometry geometry, IStorage x, IStorage weight, IStorage bias, IStorage y, IStorage mean, IStorage variance)
    {
        Norm("BatchNorm", geometry, [("x", x), ("y", y)], [("weight", weight), ("bias", bias), ("mean", mean), ("variance", variance)]);
        Inner.BatchNorm(geometry, x, weight, bias, y, mean, variance);
    }

    /// <inheritdoc/>
    public void BatchNormInputGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight, IStorage gradX)
    {
        Norm("BatchNormInputGrad", geometry, [("gradY", gradY), ("x", x), ("gradX", gradX)], [("mean", mean), ("variance", variance), ("weight", weight)]);
        Inner.BatchNormInputGrad(geometry, gradY, x, mean, variance, weight, gradX);
    }

    /// <inheritdoc/>
    public void BatchNormInputGradBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradX, IStorage gradWeight)
    {
        Norm("BatchNormInputGradBackward", geometry, [("gradY", gradY), ("x", x), ("h", h), ("gradX", gradX)],
            [("mean", mean), ("variance", variance), ("weight", weight), ("gradWeight", gradWeight)]);
        Inner.BatchNormInputGradBackward(geometry, gradY, x, mean, variance, weight, h, gradX, gradWeight);
    }

    /// <inheritdoc/>
    public void BatchNormBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage gradX, IStorage? gradWeight, IStorage? scaledNormalized, NormAccumulate accumulate = NormAccumulate.None,
        IStorage? gradYSums = null, IStorage? gradXSums = null, IStorage? scaledNormalizedBias = null)
    {
        const string op = "BatchNormBackward";
        if (scaledNormalizedBias is not null && scaledNormalized is null)
        {
            throw Fail(op, "scaledNormalizedBias is given without scaledNormalized");
        }
        var full = new List<(string, IStorage)> { ("gradY", gradY), ("x", x), ("gradX", gradX) };
        if (scaledNormalized is not null)
        {
            full.Add(("scaledNormalized", scaledNormalized));
        }
        var channels = new List<(string, IStorage)> { ("mean", mean), ("variance", variance), ("weight", weight) };
        foreach (var (name, storage) in new[] { ("gradWeight", gradWeight), ("gradYSums", gradYSums), ("gradXSums", gradXSums), ("scaledNormalizedBias", scaledNormalizedBias) })
        {
            if (storage is not null)
            {
                channels.Add((name, storage));
            }
        }
        Norm(op, geometry, [.. full], [.. channels]);
        Inner.BatchNormBackward(geometry, gradY, x, mean, variance, weight, gradX, gradWeight, scaledNormalized, accumulate, gradYSums, gradXSums,
            scaledNormalizedBias);
    }

    /// <inheritdoc/>
    public void BatchNormDoubleBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradGradY, IStorage gradX, IStorage gradWeight, NormAccumulate accumulate = NormAccumulate.None)
    {
        Norm("BatchNormDoubleBackward", geometry, [("gradY", gradY), ("x", x), ("h", h), ("gradGradY", gradGradY), ("gradX", gradX)],
            [("mean", mean), ("variance", variance), ("weight", weight), ("gradWeight", gradWeight)]);
        Inner.BatchNormDoubleBackward(geometry, gradY, x, mean, variance, weight, h, gradGradY, gradX, gradWeight, accumulate);
    }

    /// <inheritdoc/>
    public void BatchNormWeightGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage gradWeight)
    {
        Norm("BatchNormWeightGrad", geometry, [("gradY", gradY), ("x", x)], [("mean", mean), ("variance", variance), ("gradWeight", gradWeight)]);
        Inner.BatchNormWeightGrad(geometry, gradY, x, mean, variance, gradWeight);
    }

    /// <inheritdoc/>
    public void MaxPool2d(in PoolGeometry geometry, IStorage x, IStorage y, IStorage indices)
    {
        const string op = "MaxPool2d";
        Pool(op, geometry, x, geometry.InputLength, y, geometry.OutputLength);
        Own(op, nameof(indices), indices);
        IsDType(op, "indices", indices, DType.Int64);
        HoldsExactly(op, "indices", indices, geometry.OutputLength);
        Inner.MaxPool2d(geometry, x, y, indices);
    }

    /// <inheritdoc/>
    public void AvgPool2d(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage x, IStorage y)
    {
        Pool("AvgPool2d", geometry, x, geometry.InputLength, y, geometry.OutputLength);
        NonNegative("AvgPool2d", nameof(divisorOverride), divisorOverride);
        Inner.AvgPool2d(geometry, countIncludePad, divisorOverride, x, y);
    }

    /// <inheritdoc/>
    public void AvgPool2dGrad(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage gradY, IStorage gradX)
    {
        Pool("AvgPool2dGrad", geometry, gradY, geometry.OutputLength, gradX, geometry.InputLength);
        NonNegative("AvgPool2dGrad", nameof(divisorOverride), divisorOverride);
        Inner.AvgPool2dGrad(geometry, countIncludePad, divisorOverride, gradY, gradX);
    }

    /// <inheritdoc/>
    public void AdaptiveAvgPool2d(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage x, IStorage y)
    {
        Adaptive("AdaptiveAvgPool2d", planes, inHeight, inWidth, outHeight, outWidth, x, (long)planes * inHeight * inWidth, y, (long)planes * outHeight * outWidth);
        Inner.AdaptiveAvgPool2d(planes, inHeight, inWidth, outHeight, outWidth, x, y);
    }

    /// <inheritdoc/>
    public void AdaptiveAvgPool2dGrad(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage gradY, IStorage gradX)
    {
        Adaptive("AdaptiveAvgPool2dGrad", planes, inHeight, inWidth, outHeight, outWidth, gradY, (long)planes * outHeight * outWidth, gradX, (long)planes * inHeight * inWidth);
        Inner.AdaptiveAvgPool2dGrad(planes, inHeight, inWidth, outHeight, outWidth, gradY, gradX);
    }

    /// <inheritdoc/>
    public void Random(IStorage destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b)
    {
        Own("Random", nameof(destination), destination);
        Float("Random", "destination", destination);
        Inner.Random(destination, distribution, seed, offset, a, b);
    }

    /// <summary>The backend's own description, marked as checked.</summary>
    public override string ToString() => $"checked {Inner.Name} on {Device}";

    // ------------------------------------------------------------------ the checks

    private ArgumentException Fail(string op, string what) => new($"Checked {Inner.Name}.{op}: {what}.");

    private void Own(string op, string name, IStorage storage)
    {
        ArgumentNullException.ThrowIfNull(storage, name);
        if (storage.Device != Device)
        {
            throw Fail(op, $"{name} ({storage.DType}, {storage.Length} elements) lives on {storage.Device}, not on this backend's {Device}");
        }
    }

    private void NonNegative(string op, string name, long value)
    {
        if (value < 0)
        {
            throw Fail(op, $"{name} is {value}, which is negative");
        }
    }

    private void Positive(string op, string name, long value)
    {
        if (value <= 0)
        {
            throw Fail(op, $"{name} is {value}, which is not positive");
        }
    }

    private void SameDType(string op, string nameA, IStorage a, string nameB, IStorage b)
    {
        if (a.DType != b.DType)
        {
            throw Fail(op, $"{nameA} is {a.DType} but {nameB} is {b.DType}");
        }
    }

    private void IsDType(string op, string name, IStorage s, DType dtype)
    {
        if (s.DType != dtype)
        {
            throw Fail(op, $"{name} is {s.DType}, not {dtype}");
        }
    }

    private void Float(string op, string name, IStorage s)
    {
        if (!s.DType.IsFloatingPoint())
        {
            throw Fail(op, $"{name} is {s.DType}, not a floating-point dtype");
        }
    }

    private void SameLength(string op, IStorage x, IStorage y) => SameLength(op, "x", x, "y", y);

    private void SameLength(string op, string xName, IStorage x, string yName, IStorage y)
    {
        if (x.Length != y.Length)
        {
            throw Fail(op, $"{xName} holds {x.Length} elements but {yName} holds {y.Length}");
        }
    }

    private void Holds(string op, string name, IStorage s, Shape shape)
    {
        if (shape.Numel > s.Length)
        {
            throw Fail(op, $"{name} has shape {shape} ({shape.Numel} elements) but its storage holds {s.Length}");
        }
    }

    private void Holds(string op, string name, IStorage s, long count)
    {
        if (count > s.Length)
        {
            throw Fail(op, $"{name} needs {count} elements but its storage holds {s.Length}");
        }
    }

    private void HoldsExactly(string op, string name, IStorage s, long count)
    {
        if (count != s.Length)
        {
            throw Fail(op, $"{name} must hold exactly {count} elements but its storage holds {s.Length}");
        }
    }

    private void BroadcastsTo(string op, string name, Shape shape, Shape target)
    {
        if (!shape.IsBroadcastableTo(target))
        {
            throw Fail(op, $"{name} of shape {shape} does not broadcast to the output shape {target}");
        }
    }

    private void Elementwise(string op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        Own(op, nameof(a), a);
        Own(op, nameof(b), b);
        Own(op, nameof(y), y);
        Holds(op, "a", a, aShape);
        Holds(op, "b", b, bShape);
        HoldsExactly(op, "y", y, yShape.Numel);
        BroadcastsTo(op, "a", aShape, yShape);
        BroadcastsTo(op, "b", bShape, yShape);
    }

    private void Extent(string op, string name, IStorage s, int batch, long stride, long matrix)
    {
        NonNegative(op, $"{name}'s batch stride", stride);
        long needed = ((batch - 1) * stride) + matrix;
        if (matrix > 0 && needed > s.Length)
        {
            throw Fail(op, $"{name} needs {needed} elements ({batch} batches, stride {stride}, {matrix} per matrix) but its storage holds {s.Length}");
        }
    }

    private void Within(string op, string name, IStorage s, long offset, ReadOnlySpan<long> strides, Shape shape)
    {
        if (strides.Length != shape.Rank)
        {
            throw Fail(op, $"{name} has {strides.Length} strides for shape {shape}");
        }
        if (shape.Numel == 0)
        {
            return;
        }
        long lo = offset, hi = offset;
        for (int d = 0; d < strides.Length; d++)
        {
            long span = (shape.Dims[d] - 1) * strides[d];
            if (span < 0)
            {
                lo += span;
            }
            else
            {
                hi += span;
            }
        }
        if (lo < 0 || hi >= s.Length)
        {
            throw Fail(op, $"{name} positions {lo}..{hi} (offset {offset}, strides [{string.Join(", ", strides.ToArray())}], shape {shape}) leave its storage of {s.Length} elements");
        }
    }

    private void IndexCall(string op, IStorage data, int outer, int dataSize, int inner, IStorage index, int indexSize, long otherLength, IStorage other,
        bool perElementIndex)
    {
        Own(op, "data", data);
        Own(op, nameof(index), index);
        Own(op, "y/source", other);
        NonNegative(op, nameof(outer), outer);
        NonNegative(op, nameof(inner), inner);
        NonNegative(op, nameof(indexSize), indexSize);
        NonNegative(op, "axis size", dataSize);
        IsDType(op, "index", index, DType.Int64);
        SameDType(op, "data", data, "y/source", other);
        HoldsExactly(op, "data", data, (long)outer * dataSize * inner);
        HoldsExactly(op, "y/source", other, otherLength);
        long count = perElementIndex ? (long)outer * indexSize * inner : indexSize;
        HoldsExactly(op, "index", index, count);
        if (count == 0)
        {
            return;
        }
        var values = new long[count];
        Inner.Download<long>(index, values);
        for (long i = 0; i < count; i++)
        {
            long v = values[i];
            if (v < 0 || v >= dataSize)
            {
                throw Fail(op, $"index[{i}] = {v} is out of range [0, {dataSize}) of the indexed axis");
            }
        }
    }

    private void Conv(string op, in ConvGeometry g, (string Name, IStorage Storage, long Length) a, (string Name, IStorage Storage, long Length) b,
        (string Name, IStorage Storage, long Length) c)
    {
        foreach (var (name, s, length) in new[] { a, b, c })
        {
            Own(op, name, s);
            Float(op, name, s);
            HoldsExactly(op, name, s, length);
        }
        SameDType(op, a.Name, a.Storage, b.Name, b.Storage);
        SameDType(op, a.Name, a.Storage, c.Name, c.Storage);
        if (g.Batch < 0 || g.InChannels <= 0 || g.OutChannels <= 0 || g.KernelHeight <= 0 || g.KernelWidth <= 0 || g.InHeight < 0 || g.InWidth < 0
            || g.OutHeight < 0 || g.OutWidth < 0 || g.StrideHeight <= 0 || g.StrideWidth <= 0 || g.DilationHeight <= 0 || g.DilationWidth <= 0
            || g.PadTop < 0 || g.PadLeft < 0 || g.Groups <= 0)
        {
            throw Fail(op, $"geometry {g} has a negative size or a non-positive kernel, stride, dilation or group count");
        }
        if (g.InChannels % g.Groups != 0 || g.OutChannels % g.Groups != 0)
        {
            throw Fail(op, $"groups = {g.Groups} does not divide C = {g.InChannels} and O = {g.OutChannels}");
        }
    }

    /// <summary>Full-size operands of N·C·S elements and per-channel ones of C, all float of one dtype, on this backend; a valid geometry.</summary>
    private void Norm(string op, in NormGeometry g, ReadOnlySpan<(string Name, IStorage Storage)> full, ReadOnlySpan<(string Name, IStorage Storage)> channels)
    {
        if (g.Problem() is { } problem)
        {
            throw Fail(op, problem);
        }
        var (firstName, first) = full[0];
        foreach (var (name, s) in full)
        {
            Own(op, name, s);
            Float(op, name, s);
            HoldsExactly(op, name, s, g.Length);
            SameDType(op, firstName, first, name, s);
        }
        foreach (var (name, s) in channels)
        {
            Own(op, name, s);
            HoldsExactly(op, name, s, g.Channels);
            SameDType(op, firstName, first, name, s);
        }
    }

    private void Pool(string op, in PoolGeometry g, IStorage input, long inputLength, IStorage output, long outputLength)
    {
        Own(op, "input", input);
        Own(op, "output", output);
        Float(op, "input", input);
        SameDType(op, "input", input, "output", output);
        HoldsExactly(op, "input", input, inputLength);
        HoldsExactly(op, "output", output, outputLength);
        if (g.Planes < 0 || g.InHeight <= 0 || g.InWidth <= 0 || g.OutHeight < 0 || g.OutWidth < 0 || g.KernelHeight <= 0 || g.KernelWidth <= 0
            || g.StrideHeight <= 0 || g.StrideWidth <= 0 || g.DilationHeight <= 0 || g.DilationWidth <= 0 || g.PadTop < 0 || g.PadLeft < 0)
        {
            throw Fail(op, $"geometry {g} has a non-positive size, kernel, stride or dilation, or a negative padding");
        }
        // Every window must hold an input element: its first row and column start inside the input or its top/left padding.
        if (g.OutHeight > 0 && ((long)(g.OutHeight - 1) * g.StrideHeight) - g.PadTop >= g.InHeight)
        {
            throw Fail(op, $"output row {g.OutHeight - 1} starts below the input's {g.InHeight} rows (geometry {g})");
        }
        if (g.OutWidth > 0 && ((long)(g.OutWidth - 1) * g.StrideWidth) - g.PadLeft >= g.InWidth)
        {
            throw Fail(op, $"output column {g.OutWidth - 1} starts right of the input's {g.InWidth} columns (geometry {g})");
        }
    }

    private void Adaptive(string op, int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage input, long inputLength, IStorage output,
        long outputLength)
    {
        Own(op, "input", input);
        Own(op, "output", output);
        Float(op, "input", input);
        SameDType(op, "input", input, "output", output);
        HoldsExactly(op, "input", input, inputLength);
        HoldsExactly(op, "output", output, outputLength);
        NonNegative(op, nameof(planes), planes);
        Positive(op, nameof(inHeight), inHeight);
        Positive(op, nameof(inWidth), inWidth);
        Positive(op, nameof(outHeight), outHeight);
        Positive(op, nameof(outWidth), outWidth);
    }

    private void ElementType<T>(string op, string name, DType dtype) where T : unmanaged
    {
        var expected = dtype switch
        {
            DType.Float32 => typeof(float),
            DType.Float64 => typeof(double),
            DType.Int64 => typeof(long),
            DType.Bool => typeof(bool),
            _ => null,
        };
        if (expected != typeof(T))
        {
            throw Fail(op, $"{name} is {dtype} but the host elements are {typeof(T).Name}");
        }
    }
}
