using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>The kernel conformance suite bound to the managed reference backend, plus its own storage contract.</summary>
public sealed class ReferenceKernelConformance : KernelConformance
{
    private static readonly ReferenceBackend Serial = new(maxDegreeOfParallelism: 1);

    protected override IBackend Backend => ReferenceBackend.Instance;

    protected override IBackend? SerialBackend => Serial;

    protected override double CaseTolerance(DType dtype) => 0;

    [Fact]
    public void CpuStorage_ExposesItsArrayWithoutCopying()
    {
        var s = (CpuStorage)Backend.Upload<float>([1f, 2f, 3f], DType.Float32);
        Assert.IsType<float[]>(s.Data);
        s.AsFloat32()[1] = 5;
        Assert.Equal(5f, ((float[])s.Data)[1]);
        Assert.Equal(5f, s.AsSpan<float>()[1]);
        Assert.Throws<InvalidOperationException>(() => s.AsFloat64().Length);
        Assert.IsType<double[]>(((CpuStorage)Backend.Allocate(DType.Float64, 2)).Data);
        Assert.IsType<long[]>(((CpuStorage)Backend.Allocate(DType.Int64, 2)).Data);
        Assert.IsType<bool[]>(((CpuStorage)Backend.Allocate(DType.Bool, 2)).Data);
        // Dispose gives a pooled array back: the storage cannot be read any more.
        s.Dispose();
        Assert.Throws<ObjectDisposedException>(() => s.AsFloat32().Length);
    }

    [Fact]
    public void Upload_ThrowsForMismatchedElementType()
    {
        var ex = Assert.Throws<ArgumentException>(() => Backend.Upload<double>([1.0], DType.Float32));
        Assert.Contains("float32", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Backend.Download<float>(Backend.Allocate(DType.Float32, 2), new float[3]));
    }

    [Fact]
    public void Kernels_ThrowNotSupported_ForDTypesWithoutTheOp()
    {
        var l = Backend.Allocate(DType.Int64, 4);
        var ex = Assert.Throws<NotSupportedException>(() => Backend.Unary(UnaryOp.Exp, l, Backend.Allocate(DType.Int64, 4)));
        Assert.Contains("Exp", ex.Message, StringComparison.Ordinal);
        Assert.Contains("int64", ex.Message, StringComparison.Ordinal);
        Assert.Throws<NotSupportedException>(() => Backend.Gemm(false, false, 1, 2, 2, 1, 1, l, 0, l, 0, 0, l, 0));
        Assert.Throws<NotSupportedException>(() => Backend.Random(l, RandomDistribution.Normal, 1, 0, 0, 1));
        Assert.Throws<NotSupportedException>(() => Backend.Reduce(ReduceOp.Sum, l, new Shape(4), [true], Backend.Allocate(DType.Int64, 1)));
        var s = new Shape(4);
        Assert.Throws<NotSupportedException>(() => Backend.Binary(BinaryOp.Div, l, s, l, s, Backend.Allocate(DType.Int64, 4), s));
    }

    [Fact]
    public void Constructor_RejectsZeroThreads()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReferenceBackend(0));
        Assert.Equal(1, Serial.MaxDegreeOfParallelism);
        Assert.Equal(Environment.ProcessorCount, ReferenceBackend.Instance.MaxDegreeOfParallelism);
    }

    [Fact]
    public void Kernels_ThrowArgumentException_InsteadOfOverrunningAStorage()
    {
        var a = Backend.Allocate(DType.Float32, 6);
        var y = Backend.Allocate(DType.Float32, 6);
        var ex = Assert.Throws<ArgumentException>(() => Backend.Binary(BinaryOp.Add, a, new Shape(2, 3), Backend.Allocate(DType.Float32, 2), new Shape(2), y, new Shape(2, 3)));
        Assert.Contains("[2]", ex.Message, StringComparison.Ordinal);
        Assert.Contains("[2, 3]", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Backend.Binary(BinaryOp.Add, a, new Shape(3, 3), a, new Shape(3, 3), y, new Shape(3, 3)));
        Assert.Throws<ArgumentException>(() => Backend.StridedCopy(a, 0, [1, 3], y, 0, [3, 1], new Shape(3, 3)));
        Assert.Throws<ArgumentException>(() => Backend.StridedCopy(a, 1, [1], y, 0, [1], new Shape(6)));
        Assert.Throws<ArgumentException>(() => Backend.Gemm(false, false, 2, 2, 3, 1, 1, a, 2, a, 3, 0, y, 6));
        Assert.Throws<ArgumentException>(() => Backend.Unary(UnaryOp.Exp, Backend.Allocate(DType.Float32, 7), y));
        Assert.Throws<ArgumentException>(() => Backend.Reduce(ReduceOp.Sum, a, new Shape(7), [true], y));
    }
}
