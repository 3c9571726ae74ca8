using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>The kernel conformance suite bound to the managed reference backend, plus its own storage contract.</summary>
public sealed partial class ReferenceKernelConformance : KernelConformance
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

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void GatherAndScatters_RefuseAnIndexOutOfRange_OnTheSerialAndTheParallelPath(int degree)
    {
        var backend = new ReferenceBackend(degree);
        // [64, 676] by 169 indices per slice runs the slices in parallel with two threads; one bad index in slice 40.
        var index = new long[64 * 169];
        index[(40 * 169) + 7] = 676;
        var src = backend.Upload<float>(new float[64 * 169], DType.Float32);
        var idx = backend.Upload<long>(index, DType.Int64);
        var dest = backend.Allocate(DType.Float32, 64 * 676);
        Assert.Contains("ScatterAdd", Assert.Throws<ArgumentOutOfRangeException>(() => backend.ScatterAdd(dest, 64, 676, 1, idx, 169, src)).Message, StringComparison.Ordinal);
        Assert.Contains("ScatterAdd", Assert.Throws<ArgumentOutOfRangeException>(() => backend.ScatterAddIntoZeros(dest, 64, 676, 1, idx, 169, src)).Message, StringComparison.Ordinal);
        var y = backend.Allocate(DType.Float32, 64 * 169);
        Assert.Contains("Gather", Assert.Throws<ArgumentOutOfRangeException>(() => backend.Gather(dest, 64, 676, 1, idx, 169, y)).Message, StringComparison.Ordinal);
        index[(40 * 169) + 7] = -1;
        idx = backend.Upload<long>(index, DType.Int64);
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.ScatterAddIntoZeros(dest, 64, 676, 1, idx, 169, src));
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.Gather(dest, 64, 676, 1, idx, 169, y));
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

    /// <summary>Output and operand shapes of large elementwise calls: a split by elements (full and scalar operands) and by leading rows (operands cut along them or broadcast whole).</summary>
    public static TheoryData<int[], int[], int[]> SplitShapes => new()
    {
        { new[] { 70001 }, new[] { 70001 }, new[] { 1 } },
        { new[] { 8, 3, 50, 60 }, new[] { 8, 3, 50, 60 }, new[] { 1, 3, 1, 60 } },
        { new[] { 8, 3, 50, 60 }, new[] { 8, 1, 1, 1 }, new[] { 8, 3, 50, 60 } },
        { new[] { 7, 3, 50, 60 }, new[] { 3, 50, 60 }, new[] { 7, 3, 1, 1 } },
        { new[] { 2, 40000 }, new[] { 2, 1 }, new[] { 1, 40000 } },
    };

    [Theory]
    [MemberData(nameof(SplitShapes))]
    public void LargeBinaryAndWhere_SplitAcrossThreads_GiveTheSerialBits(int[] yDims, int[] aDims, int[] bDims)
    {
        // Three threads whatever the machine has, so the split runs even on one core.
        var threaded = new ReferenceBackend(3);
        Shape y = new(yDims), a = new(aDims), b = new(bDims);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var av = RandomValues(21, a.Numel);
            var bv = RandomValues(22, b.Numel);
            var cv = RandomValues(23, y.Numel).Select(v => v > 0).ToArray();
            foreach (var op in new[] { BinaryOp.Add, BinaryOp.Mul, BinaryOp.Div, BinaryOp.Maximum })
            {
                Assert.Equal(Run(Serial, op), Run(threaded, op));
            }
            Assert.Equal(RunWhere(Serial), RunWhere(threaded));

            double[] Run(ReferenceBackend backend, BinaryOp op)
            {
                var result = backend.AllocateUninitialized(dtype, y.Numel);
                backend.Binary(op, Load(backend, av, dtype), a, Load(backend, bv, dtype), b, result, y);
                return Read(result);
            }

            double[] RunWhere(ReferenceBackend backend)
            {
                var result = backend.AllocateUninitialized(dtype, y.Numel);
                backend.Where(backend.Upload<bool>(cv, DType.Bool), y, Load(backend, av, dtype), a, Load(backend, bv, dtype), b, result, y);
                return Read(result);
            }
        }
    }

    [Fact]
    public void LargeUnaryAndStridedCopies_SplitAcrossThreads_GiveTheSerialBits()
    {
        // Vectorized and scalar unary operators, and a broadcast strided copy, each large enough to run on the threads.
        var threaded = new ReferenceBackend(3);
        const int n = 300_007;
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var values = RandomValues(24, n, -3, 3);
            foreach (var op in new[] { UnaryOp.Relu, UnaryOp.Sign, UnaryOp.Abs, UnaryOp.Exp, UnaryOp.Tanh })
            {
                Assert.Equal(RunUnary(Serial, op), RunUnary(threaded, op));
            }
            var rows = RandomValues(25, 64);
            Assert.Equal(RunCopy(Serial), RunCopy(threaded));

            double[] RunUnary(ReferenceBackend backend, UnaryOp op)
            {
                var result = backend.AllocateUninitialized(dtype, n);
                backend.Unary(op, Load(backend, values, dtype), result);
                return Read(result);
            }

            double[] RunCopy(ReferenceBackend backend)
            {
                var result = backend.AllocateUninitialized(dtype, 5L * 64 * 901);
                backend.StridedCopy(Load(backend, rows, dtype), 0, [0, 1, 0], result, 0, [64 * 901, 901, 1], new Shape(5, 64, 901));
                return Read(result);
            }
        }
    }

    private static IStorage Load(ReferenceBackend backend, double[] values, DType dtype) => dtype == DType.Float32
        ? backend.Upload<float>(Array.ConvertAll(values, v => (float)v), DType.Float32)
        : backend.Upload<double>(values, DType.Float64);

    private static double[] Read(IStorage storage) => storage.DType == DType.Float32
        ? Array.ConvertAll(((CpuStorage)storage).AsFloat32().ToArray(), v => (double)v)
        : ((CpuStorage)storage).AsFloat64().ToArray();

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
