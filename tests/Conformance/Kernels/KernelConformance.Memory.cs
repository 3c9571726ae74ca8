namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    [InlineData(DType.Int64)]
    [InlineData(DType.Bool)]
    public void Allocate_IsZeroFilledWithDTypeAndLength(DType dtype)
    {
        RequireBackend();
        using var s = Backend.Allocate(dtype, 37);
        Assert.Equal(dtype, s.DType);
        Assert.Equal(37, s.Length);
        Assert.Equal(Backend.Device, s.Device);
        switch (dtype)
        {
            case DType.Float32 or DType.Float64:
                Assert.All(Down(s), v => Assert.Equal(0.0, v));
                break;
            case DType.Int64:
                Assert.All(DownLong(s), v => Assert.Equal(0L, v));
                break;
            default:
                Assert.All(DownBool(s), Assert.False);
                break;
        }
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    [InlineData(DType.Int64)]
    [InlineData(DType.Bool)]
    public void AllocateUninitialized_HasDTypeAndLength(DType dtype)
    {
        RequireBackend();
        using var s = Backend.AllocateUninitialized(dtype, 1000);
        Assert.Equal(dtype, s.DType);
        Assert.Equal(1000, s.Length);
        using var empty = Backend.AllocateUninitialized(dtype, 0);
        Assert.Equal(0, empty.Length);
    }

    [Fact]
    public void UploadDownload_RoundTripsEveryDType()
    {
        RequireBackend();
        float[] f = [1.5f, -0f, float.NaN, float.PositiveInfinity, 3e-45f];
        var fo = new float[f.Length];
        Backend.Download<float>(Backend.Upload<float>(f, DType.Float32), fo);
        Assert.Equal(f.Select(BitConverter.SingleToInt32Bits), fo.Select(BitConverter.SingleToInt32Bits));

        double[] d = [1.5, -0.0, double.NaN, double.NegativeInfinity, 5e-324];
        var dOut = new double[d.Length];
        Backend.Download<double>(Backend.Upload<double>(d, DType.Float64), dOut);
        Assert.Equal(d.Select(BitConverter.DoubleToInt64Bits), dOut.Select(BitConverter.DoubleToInt64Bits));

        long[] l = [long.MinValue, -1, 0, long.MaxValue];
        Assert.Equal(l, DownLong(UpLong(l)));

        bool[] b = [true, false, true];
        Assert.Equal(b, DownBool(UpBool(b)));

        Assert.Empty(Down(Up([], DType.Float32)));
    }

    [Fact]
    public void Fill_ConvertsToEveryDType()
    {
        RequireBackend();
        var f = Backend.Allocate(DType.Float32, 5);
        Backend.Fill(f, 0.1);
        Assert.All(Down(f), v => Assert.Equal((double)0.1f, v));

        var d = Backend.Allocate(DType.Float64, 300);
        Backend.Fill(d, -2.5);
        Assert.All(Down(d), v => Assert.Equal(-2.5, v));
        Backend.Fill(d, double.NaN);
        Assert.All(Down(d), v => Assert.True(double.IsNaN(v)));

        var l = Backend.Allocate(DType.Int64, 4);
        Backend.Fill(l, -2.7);
        Assert.All(DownLong(l), v => Assert.Equal(-2L, v));

        var b = Backend.Allocate(DType.Bool, 4);
        Backend.Fill(b, 2.5);
        Assert.All(DownBool(b), Assert.True);
        Backend.Fill(b, 0);
        Assert.All(DownBool(b), Assert.False);

        Backend.Fill(Backend.Allocate(DType.Float32, 0), 1);
    }

    [Fact]
    public void Cast_BetweenEveryPairOfDTypes()
    {
        RequireBackend();
        double[] values = [0, -0.0, 1, -1, 2.75, -2.75, 1e6 + 0.5, 3, -7.999];
        bool[] truth = values.Select(v => v != 0).ToArray();
        long[] truncated = values.Select(v => (long)Math.Truncate(v)).ToArray();

        foreach (var from in new[] { DType.Float32, DType.Float64 })
        {
            var src = Up(values, from);
            var rounded = Round(values, from);
            foreach (var to in new[] { DType.Float32, DType.Float64 })
            {
                var dst = Backend.Allocate(to, values.Length);
                Backend.Cast(src, dst);
                AssertClose(Round(rounded, to), Down(dst), 0, 0, $"{from}->{to}");
            }
            var li = Backend.Allocate(DType.Int64, values.Length);
            Backend.Cast(src, li);
            Assert.Equal(rounded.Select(v => (long)Math.Truncate(v)), DownLong(li));

            var bo = Backend.Allocate(DType.Bool, values.Length);
            Backend.Cast(src, bo);
            Assert.Equal(truth, DownBool(bo));
        }

        var ls = UpLong(truncated);
        foreach (var to in new[] { DType.Float32, DType.Float64 })
        {
            var dst = Backend.Allocate(to, values.Length);
            Backend.Cast(ls, dst);
            AssertClose(Round(truncated.Select(v => (double)v).ToArray(), to), Down(dst), 0, 0, $"int64->{to}");
        }
        var lb = Backend.Allocate(DType.Bool, values.Length);
        Backend.Cast(ls, lb);
        Assert.Equal(truncated.Select(v => v != 0), DownBool(lb));
        var ll = Backend.Allocate(DType.Int64, values.Length);
        Backend.Cast(ls, ll);
        Assert.Equal(truncated, DownLong(ll));

        var bs = UpBool(truth);
        foreach (var to in new[] { DType.Float32, DType.Float64 })
        {
            var dst = Backend.Allocate(to, values.Length);
            Backend.Cast(bs, dst);
            Assert.Equal(truth.Select(t => t ? 1.0 : 0.0), Down(dst));
        }
        var bl = Backend.Allocate(DType.Int64, values.Length);
        Backend.Cast(bs, bl);
        Assert.Equal(truth.Select(t => t ? 1L : 0L), DownLong(bl));
        var bb = Backend.Allocate(DType.Bool, values.Length);
        Backend.Cast(bs, bb);
        Assert.Equal(truth, DownBool(bb));
    }

    [Fact]
    public void Cast_LargeFloatToDoubleAndBack_IsExactRounding()
    {
        RequireBackend();
        var values = RandomValues(11, 1037, -1e5, 1e5);
        var d = Up(values, DType.Float64);
        var f = Backend.Allocate(DType.Float32, values.Length);
        Backend.Cast(d, f);
        AssertBitwise(Round(values, DType.Float32), Down(f));
        var back = Backend.Allocate(DType.Float64, values.Length);
        Backend.Cast(f, back);
        AssertBitwise(Round(values, DType.Float32), Down(back));
    }

    public static TheoryData<int[], long[], long, long[], long> StridedCases => new()
    {
        // shape, source strides, source offset, destination strides, destination offset
        { new[] { 3, 4 }, new long[] { 4, 1 }, 0, new long[] { 4, 1 }, 0 },                   // plain copy
        { new[] { 3, 4 }, new long[] { 1, 3 }, 0, new long[] { 4, 1 }, 0 },                   // transpose
        { new[] { 2, 3, 4 }, new long[] { 1, 8, 2 }, 0, new long[] { 12, 4, 1 }, 0 },          // permute
        { new[] { 5, 7 }, new long[] { 0, 1 }, 2, new long[] { 7, 1 }, 0 },                   // expand rows
        { new[] { 5, 7 }, new long[] { 1, 0 }, 0, new long[] { 7, 1 }, 0 },                   // expand columns
        { new[] { 4, 3 }, new long[] { 10, 1 }, 5, new long[] { 3, 1 }, 0 },                  // narrow
        { new[] { 2, 3 }, new long[] { 3, 1 }, 0, new long[] { 7, 1 }, 4 },                   // cat into a slice
        { new[] { 2, 1, 3 }, new long[] { 3, 99, 1 }, 1, new long[] { 3, 3, 1 }, 0 },         // size-1 dim, odd stride
        { new[] { 0, 5 }, new long[] { 5, 1 }, 0, new long[] { 5, 1 }, 0 },                   // empty
        { System.Array.Empty<int>(), System.Array.Empty<long>(), 6, System.Array.Empty<long>(), 3 }, // scalar
        { new[] { 3, 70 }, new long[] { 1, 3 }, 0, new long[] { 70, 1 }, 0 },                 // long strided rows
        { new[] { 2, 2, 2, 2, 3 }, new long[] { 0, 12, 6, 3, 1 }, 0, new long[] { 48, 24, 12, 3, 1 }, 0 }, // rank 5, coalescable
        { new[] { 19, 37 }, new long[] { 1, 19 }, 0, new long[] { 37, 1 }, 0 },               // transpose, ragged blocks
        { new[] { 3, 16, 9 }, new long[] { 144, 1, 16 }, 0, new long[] { 144, 9, 1 }, 0 },     // batched transpose
        { new[] { 17, 12 }, new long[] { 1, 0 }, 3, new long[] { 12, 1 }, 0 },                // broadcast column
        // Large enough for the Reference backend to write ranges of rows in parallel (contiguous destinations):
        { new[] { 5, 64, 900 }, new long[] { 0, 1, 0 }, 2, new long[] { 57600, 900, 1 }, 0 },  // a sum's broadcast gradient
        { new[] { 600, 500 }, new long[] { 510, 1 }, 7, new long[] { 500, 1 }, 0 },           // narrow rows
        { new[] { 3, 100, 1000 }, new long[] { 200000, 2000, 2 }, 1, new long[] { 100000, 1000, 1 }, 0 }, // strided inner rows
        { new[] { 7, 300, 130 }, new long[] { 130, 910, 1 }, 0, new long[] { 39000, 130, 1 }, 5 }, // permuted outer dims, offset destination
    };

    [Theory]
    [MemberData(nameof(StridedCases))]
    public void StridedCopy_MatchesIndexOracle_ForEveryDType(int[] shape, long[] srcStrides, long srcOffset, long[] dstStrides, long dstOffset)
    {
        RequireBackend();
        long srcLen = 1 + srcOffset, dstLen = 1 + dstOffset;
        for (int d = 0; d < shape.Length; d++)
        {
            srcLen += Math.Max(0, (shape[d] - 1) * srcStrides[d]);
            dstLen += Math.Max(0, (shape[d] - 1) * dstStrides[d]);
        }
        long numel = Oracle.Numel(shape);
        var src = RandomValues(3, srcLen, -100, 100).Select(v => Math.Round(v)).ToArray();
        var initial = RandomValues(4, dstLen, -100, 100).Select(v => Math.Round(v)).ToArray();
        var expected = (double[])initial.Clone();
        for (long i = 0; i < numel; i++)
        {
            var idx = Oracle.Unravel(i, shape);
            long so = srcOffset, dof = dstOffset;
            for (int d = 0; d < shape.Length; d++)
            {
                so += idx[d] * srcStrides[d];
                dof += idx[d] * dstStrides[d];
            }
            expected[dof] = src[so];
        }
        var s = new Shape(shape);
        foreach (var dt in new[] { DType.Float32, DType.Float64 })
        {
            var dst = Up(initial, dt);
            Backend.StridedCopy(Up(src, dt), srcOffset, srcStrides, dst, dstOffset, dstStrides, s);
            AssertClose(expected, Down(dst), 0, 0, dt.Name());
        }
        var ldst = UpLong(initial.Select(v => (long)v).ToArray());
        Backend.StridedCopy(UpLong(src.Select(v => (long)v).ToArray()), srcOffset, srcStrides, ldst, dstOffset, dstStrides, s);
        Assert.Equal(expected.Select(v => (long)v), DownLong(ldst));
        var bdst = UpBool(initial.Select(v => v > 0).ToArray());
        Backend.StridedCopy(UpBool(src.Select(v => v > 0).ToArray()), srcOffset, srcStrides, bdst, dstOffset, dstStrides, s);
        Assert.Equal(expected.Select(v => v > 0), DownBool(bdst));
    }
}
