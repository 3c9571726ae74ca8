namespace Higher.GradCheck;

/// <summary>
/// An <see cref="IBackend"/> that runs every kernel on another backend but claims a different
/// device: the cross-backend tests and the device check's self-test bind the Reference backend to
/// cpu:1 with it, so any op that strays from the candidate device shows, with no GPU needed.
/// </summary>
public sealed class ForwardingBackend(IBackend target, Device device) : IBackend
{
    /// <summary>A storage of the target backend that claims this backend's device, as storages of a real second device would.</summary>
    private sealed class ForwardedStorage(IStorage inner, Device device) : IStorage
    {
        public IStorage Inner => inner;

        public DType DType => inner.DType;

        public long Length => inner.Length;

        public Device Device => device;

        public void Dispose() => inner.Dispose();
    }

    private ForwardedStorage W(IStorage storage) => new(storage, device);

    private IStorage U(IStorage storage) => storage is ForwardedStorage f && f.Device == device
        ? f.Inner
        : throw new ArgumentException($"{Name}: a storage of {storage.Device} was passed to the backend of {device}.");

    public string Name => target.Name + "@" + device;

    public Device Device => device;

    public IStorage Allocate(DType dtype, long length) => W(target.Allocate(dtype, length));

    public IStorage AllocateUninitialized(DType dtype, long length) => W(target.AllocateUninitialized(dtype, length));

    public IStorage Upload<T>(ReadOnlySpan<T> data, DType dtype) where T : unmanaged => W(target.Upload(data, dtype));

    public void Download<T>(IStorage source, Span<T> destination) where T : unmanaged => target.Download(U(source), destination);

    public void Fill(IStorage destination, double value) => target.Fill(U(destination), value);

    public void Cast(IStorage source, IStorage destination) => target.Cast(U(source), U(destination));

    public void StridedCopy(IStorage source, long sourceOffset, ReadOnlySpan<long> sourceStrides, IStorage destination, long destinationOffset,
        ReadOnlySpan<long> destinationStrides, Shape shape) => target.StridedCopy(U(source), sourceOffset, sourceStrides, U(destination), destinationOffset, destinationStrides, shape);

    public void Unary(UnaryOp op, IStorage x, IStorage y, double alpha = 0, double beta = 0) => target.Unary(op, U(x), U(y), alpha, beta);

    public void Binary(BinaryOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape) => target.Binary(op, U(a), aShape, U(b), bShape, U(y), yShape);

    public void ScaledAdd(IStorage a, IStorage b, double alpha, IStorage y) => target.ScaledAdd(U(a), U(b), alpha, U(y));

    public void AdamUpdate(in AdamScalars scalars, IStorage param, IStorage grad, IStorage expAvg, IStorage expAvgSq, IStorage? maxExpAvgSq,
        IStorage paramOut, IStorage expAvgOut, IStorage expAvgSqOut, IStorage? maxExpAvgSqOut) =>
        target.AdamUpdate(scalars, U(param), U(grad), U(expAvg), U(expAvgSq), maxExpAvgSq is null ? null : U(maxExpAvgSq),
            U(paramOut), U(expAvgOut), U(expAvgSqOut), maxExpAvgSqOut is null ? null : U(maxExpAvgSqOut));

    public void Compare(CompareOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape) => target.Compare(op, U(a), aShape, U(b), bShape, U(y), yShape);

    public void Where(IStorage condition, Shape conditionShape, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape) => target.Where(U(condition), conditionShape, U(a), aShape, U(b), bShape, U(y), yShape);

    public void Reduce(ReduceOp op, IStorage x, Shape xShape, ReadOnlySpan<bool> reduceAxes, IStorage y) => target.Reduce(op, U(x), xShape, reduceAxes, U(y));

    public void ArgReduce(ReduceOp op, IStorage x, int outer, int size, int inner, IStorage values, IStorage indices) => target.ArgReduce(op, U(x), outer, size, inner, U(values), U(indices));

    public void Gemm(bool transposeA, bool transposeB, int batch, int m, int n, int k, double alpha, IStorage a, long strideA, IStorage b, long strideB,
        double beta, IStorage c, long strideC) => target.Gemm(transposeA, transposeB, batch, m, n, k, alpha, U(a), strideA, U(b), strideB, beta, U(c), strideC);

    public void Gather(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y) => target.Gather(U(x), outer, xSize, inner, U(index), indexSize, U(y));

    public void ScatterAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) => target.ScatterAdd(U(destination), outer, destinationSize, inner, U(index), indexSize, U(source));

    public void ScatterAddIntoZeros(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) =>
        target.ScatterAddIntoZeros(U(destination), outer, destinationSize, inner, U(index), indexSize, U(source));

    public void IndexSelect(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y) => target.IndexSelect(U(x), outer, xSize, inner, U(index), indexSize, U(y));

    public void IndexAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) => target.IndexAdd(U(destination), outer, destinationSize, inner, U(index), indexSize, U(source));

    public void Conv2d(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage y) => target.Conv2d(geometry, U(x), U(weight), U(y));

    public void Conv2dInputGrad(in ConvGeometry geometry, IStorage gradY, IStorage weight, IStorage gradX) => target.Conv2dInputGrad(geometry, U(gradY), U(weight), U(gradX));

    public void Conv2dWeightGrad(in ConvGeometry geometry, IStorage x, IStorage gradY, IStorage gradWeight) => target.Conv2dWeightGrad(geometry, U(x), U(gradY), U(gradWeight));

    public void BatchNorm(in NormGeometry geometry, IStorage x, IStorage weight, IStorage bias, IStorage y, IStorage mean, IStorage variance) =>
        target.BatchNorm(geometry, U(x), U(weight), U(bias), U(y), U(mean), U(variance));

    public void BatchNormInputGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight, IStorage gradX) =>
        target.BatchNormInputGrad(geometry, U(gradY), U(x), U(mean), U(variance), U(weight), U(gradX));

    public void BatchNormInputGradBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradX, IStorage gradWeight) =>
        target.BatchNormInputGradBackward(geometry, U(gradY), U(x), U(mean), U(variance), U(weight), U(h), U(gradX), U(gradWeight));

    public void BatchNormBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage gradX, IStorage? gradWeight, IStorage? scaledNormalized, NormAccumulate accumulate = NormAccumulate.None,
        IStorage? gradYSums = null, IStorage? gradXSums = null, IStorage? scaledNormalizedBias = null) =>
        target.BatchNormBackward(geometry, U(gradY), U(x), U(mean), U(variance), U(weight), U(gradX),
            gradWeight is null ? null : U(gradWeight), scaledNormalized is null ? null : U(scaledNormalized), accumulate,
            gradYSums is null ? null : U(gradYSums), gradXSums is null ? null : U(gradXSums), scaledNormalizedBias is null ? null : U(scaledNormalizedBias));

    public void BatchNormDoubleBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradGradY, IStorage gradX, IStorage gradWeight, NormAccumulate accumulate = NormAccumulate.None) =>
        target.BatchNormDoubleBackward(geometry, U(gradY), U(x), U(mean), U(variance), U(weight), U(h), U(gradGradY), U(gradX), U(gradWeight), accumulate);

    public void BatchNormWeightGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage gradWeight) =>
        target.BatchNormWeightGrad(geometry, U(gradY), U(x), U(mean), U(variance), U(gradWeight));

    public void MaxPool2d(in PoolGeometry geometry, IStorage x, IStorage y, IStorage indices) => target.MaxPool2d(geometry, U(x), U(y), U(indices));

    public void AvgPool2d(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage x, IStorage y) => target.AvgPool2d(geometry, countIncludePad, divisorOverride, U(x), U(y));

    public void AvgPool2dGrad(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage gradY, IStorage gradX) => target.AvgPool2dGrad(geometry, countIncludePad, divisorOverride, U(gradY), U(gradX));

    public void AdaptiveAvgPool2d(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage x, IStorage y) => target.AdaptiveAvgPool2d(planes, inHeight, inWidth, outHeight, outWidth, U(x), U(y));

    public void AdaptiveAvgPool2dGrad(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage gradY, IStorage gradX) => target.AdaptiveAvgPool2dGrad(planes, inHeight, inWidth, outHeight, outWidth, U(gradY), U(gradX));

    public void Random(IStorage destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b) => target.Random(U(destination), distribution, seed, offset, a, b);
}
