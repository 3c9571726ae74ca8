namespace Higher.GradCheck;

/// <summary>
/// An <see cref="IBackend"/> that runs every kernel on another backend but claims a different
/// device: the cross-backend tests and the device check's self-test bind the Reference backend to
/// cpu:1 with it, so any op that strays from the candidate device shows, with no GPU needed.
/// </summary>
public sealed class ForwardingBackend(IBackend target, Device device) : IBackend
{
    public string Name => target.Name + "@" + device;

    public Device Device => device;

    public IStorage Allocate(DType dtype, long length) => target.Allocate(dtype, length);

    public IStorage AllocateUninitialized(DType dtype, long length) => target.AllocateUninitialized(dtype, length);

    public IStorage Upload<T>(ReadOnlySpan<T> data, DType dtype) where T : unmanaged => target.Upload(data, dtype);

    public void Download<T>(IStorage source, Span<T> destination) where T : unmanaged => target.Download(source, destination);

    public void Fill(IStorage destination, double value) => target.Fill(destination, value);

    public void Cast(IStorage source, IStorage destination) => target.Cast(source, destination);

    public void StridedCopy(IStorage source, long sourceOffset, ReadOnlySpan<long> sourceStrides, IStorage destination, long destinationOffset,
        ReadOnlySpan<long> destinationStrides, Shape shape) => target.StridedCopy(source, sourceOffset, sourceStrides, destination, destinationOffset, destinationStrides, shape);

    public void Unary(UnaryOp op, IStorage x, IStorage y, double alpha = 0, double beta = 0) => target.Unary(op, x, y, alpha, beta);

    public void Binary(BinaryOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape) => target.Binary(op, a, aShape, b, bShape, y, yShape);

    public void Compare(CompareOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape) => target.Compare(op, a, aShape, b, bShape, y, yShape);

    public void Where(IStorage condition, Shape conditionShape, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape) => target.Where(condition, conditionShape, a, aShape, b, bShape, y, yShape);

    public void Reduce(ReduceOp op, IStorage x, Shape xShape, ReadOnlySpan<bool> reduceAxes, IStorage y) => target.Reduce(op, x, xShape, reduceAxes, y);

    public void ArgReduce(ReduceOp op, IStorage x, int outer, int size, int inner, IStorage values, IStorage indices) => target.ArgReduce(op, x, outer, size, inner, values, indices);

    public void Gemm(bool transposeA, bool transposeB, int batch, int m, int n, int k, double alpha, IStorage a, long strideA, IStorage b, long strideB,
        double beta, IStorage c, long strideC) => target.Gemm(transposeA, transposeB, batch, m, n, k, alpha, a, strideA, b, strideB, beta, c, strideC);

    public void Gather(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y) => target.Gather(x, outer, xSize, inner, index, indexSize, y);

    public void ScatterAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) => target.ScatterAdd(destination, outer, destinationSize, inner, index, indexSize, source);

    public void IndexSelect(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y) => target.IndexSelect(x, outer, xSize, inner, index, indexSize, y);

    public void IndexAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) => target.IndexAdd(destination, outer, destinationSize, inner, index, indexSize, source);

    public void Conv2d(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage y) => target.Conv2d(geometry, x, weight, y);

    public void Conv2dInputGrad(in ConvGeometry geometry, IStorage gradY, IStorage weight, IStorage gradX) => target.Conv2dInputGrad(geometry, gradY, weight, gradX);

    public void Conv2dWeightGrad(in ConvGeometry geometry, IStorage x, IStorage gradY, IStorage gradWeight) => target.Conv2dWeightGrad(geometry, x, gradY, gradWeight);

    public void MaxPool2d(in PoolGeometry geometry, IStorage x, IStorage y, IStorage indices) => target.MaxPool2d(geometry, x, y, indices);

    public void AvgPool2d(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage x, IStorage y) => target.AvgPool2d(geometry, countIncludePad, divisorOverride, x, y);

    public void AvgPool2dGrad(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage gradY, IStorage gradX) => target.AvgPool2dGrad(geometry, countIncludePad, divisorOverride, gradY, gradX);

    public void AdaptiveAvgPool2d(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage x, IStorage y) => target.AdaptiveAvgPool2d(planes, inHeight, inWidth, outHeight, outWidth, x, y);

    public void AdaptiveAvgPool2dGrad(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage gradY, IStorage gradX) => target.AdaptiveAvgPool2dGrad(planes, inHeight, inWidth, outHeight, outWidth, gradY, gradX);

    public void Random(IStorage destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b) => target.Random(destination, distribution, seed, offset, a, b);
}
