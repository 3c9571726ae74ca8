namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    public static TheoryData<int, int, int, int> IndexShapes => new()
    {
        // outer, source size, inner, index size
        { 1, 5, 1, 8 }, { 3, 4, 1, 2 }, { 2, 6, 7, 9 }, { 1, 1, 33, 3 }, { 4, 3, 2, 0 }, { 2, 10, 70, 5 },
    };

    private static long[] Indices(int seed, int count, int size)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (long)rng.Next(size)).ToArray();
    }

    [Theory]
    [MemberData(nameof(IndexShapes))]
    public void Gather_And_ScatterAdd_MatchOracle(int outer, int size, int inner, int indexSize)
    {
        RequireBackend();
        var index = Indices(51, outer * indexSize * inner, size);
        var x = RandomValues(52, outer * size * inner);
        var src = RandomValues(53, outer * indexSize * inner);
        var gathered = new double[outer * indexSize * inner];
        var scattered = RandomValues(54, outer * size * inner);
        var dest0 = (double[])scattered.Clone();
        for (int o = 0; o < outer; o++)
        {
            for (int j = 0; j < indexSize; j++)
            {
                for (int i = 0; i < inner; i++)
                {
                    int at = (o * indexSize + j) * inner + i;
                    gathered[at] = x[(o * size + (int)index[at]) * inner + i];
                    scattered[(o * size + (int)index[at]) * inner + i] += src[at];
                }
            }
        }
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var y = Backend.AllocateUninitialized(dtype, gathered.Length);
            Backend.Gather(Up(x, dtype), outer, size, inner, UpLong(index), indexSize, y);
            AssertClose(Round(gathered, dtype), Down(y), 0, 0, $"gather {dtype.Name()}");

            var dest = Up(dest0, dtype);
            Backend.ScatterAdd(dest, outer, size, inner, UpLong(index), indexSize, Up(src, dtype));
            AssertClose(scattered, Down(dest), Ulps(dtype, 4), Ulps(dtype, 4 * (indexSize + 1)), $"scatter_add {dtype.Name()}");
        }
        var ly = Backend.Allocate(DType.Int64, gathered.Length);
        Backend.Gather(UpLong(x.Select(v => (long)(v * 100)).ToArray()), outer, size, inner, UpLong(index), indexSize, ly);
        Assert.Equal(gathered.Select(v => (long)(v * 100)), DownLong(ly));
    }

    [Theory]
    [MemberData(nameof(IndexShapes))]
    public void IndexSelect_And_IndexAdd_MatchOracle(int outer, int size, int inner, int indexSize)
    {
        RequireBackend();
        var index = Indices(61, indexSize, size);
        var x = RandomValues(62, outer * size * inner);
        var src = RandomValues(63, outer * indexSize * inner);
        var selected = new double[outer * indexSize * inner];
        var added = RandomValues(64, outer * size * inner);
        var dest0 = (double[])added.Clone();
        for (int o = 0; o < outer; o++)
        {
            for (int j = 0; j < indexSize; j++)
            {
                for (int i = 0; i < inner; i++)
                {
                    selected[(o * indexSize + j) * inner + i] = x[(o * size + (int)index[j]) * inner + i];
                    added[(o * size + (int)index[j]) * inner + i] += src[(o * indexSize + j) * inner + i];
                }
            }
        }
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var y = Backend.AllocateUninitialized(dtype, selected.Length);
            Backend.IndexSelect(Up(x, dtype), outer, size, inner, UpLong(index), indexSize, y);
            AssertClose(Round(selected, dtype), Down(y), 0, 0, $"index_select {dtype.Name()}");

            var dest = Up(dest0, dtype);
            Backend.IndexAdd(dest, outer, size, inner, UpLong(index), indexSize, Up(src, dtype));
            AssertClose(added, Down(dest), Ulps(dtype, 4), Ulps(dtype, 4 * (indexSize + 1)), $"index_add {dtype.Name()}");
        }
        var ldest = UpLong(dest0.Select(v => (long)(v * 100)).ToArray());
        Backend.IndexAdd(ldest, outer, size, inner, UpLong(index), indexSize, UpLong(src.Select(v => (long)(v * 100)).ToArray()));
        var lexp = dest0.Select(v => (long)(v * 100)).ToArray();
        for (int o = 0; o < outer; o++)
        {
            for (int j = 0; j < indexSize; j++)
            {
                for (int i = 0; i < inner; i++)
                {
                    lexp[(o * size + (int)index[j]) * inner + i] += (long)(src[(o * indexSize + j) * inner + i] * 100);
                }
            }
        }
        Assert.Equal(lexp, DownLong(ldest));
    }

    public static TheoryData<int, int, int, int> ScatterIntoZerosShapes => new()
    {
        // outer, destination size, inner, index size: the small shapes, then ones large enough for the slices to run in parallel.
        { 1, 5, 1, 8 }, { 3, 4, 1, 2 }, { 2, 6, 7, 9 }, { 4, 3, 2, 0 }, { 2, 10, 70, 5 }, { 64, 676, 1, 169 }, { 8, 30, 200, 25 },
    };

    [Theory]
    [MemberData(nameof(ScatterIntoZerosShapes))]
    public void ScatterAddIntoZeros_HasTheBitsOfZerosThenScatterAdd(int outer, int size, int inner, int indexSize)
    {
        RequireBackend();
        var index = UpLong(Indices(55, outer * indexSize * inner, size));
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int64 })
        {
            var values = RandomValues(56, outer * indexSize * inner);
            var src = dtype == DType.Int64 ? UpLong(values.Select(v => (long)(v * 1000)).ToArray()) : Up(values, dtype);
            var expected = Backend.Allocate(dtype, (long)outer * size * inner);
            Backend.ScatterAdd(expected, outer, size, inner, index, indexSize, src);
            // The destination starts as garbage (NaN, or -1 for int64): every element must be written.
            var got = dtype == DType.Int64
                ? UpLong(Enumerable.Repeat(-1L, outer * size * inner).ToArray())
                : Up(Enumerable.Repeat(double.NaN, outer * size * inner).ToArray(), dtype);
            Backend.ScatterAddIntoZeros(got, outer, size, inner, index, indexSize, src);
            if (dtype == DType.Int64)
            {
                Assert.Equal(DownLong(expected), DownLong(got));
                continue;
            }
            AssertBitwise(Down(expected), Down(got), $"scatter_add into zeros {dtype.Name()} [{outer}, {size}, {inner}] by {indexSize}");
        }
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void ScatterAdd_RepeatedIndices_AccumulateInAscendingOrder(DType dtype)
    {
        RequireBackend();
        // big + 1 rounds back to big (2^24 in float32, 2^53 in float64), so ascending j gives
        // ((big + 1) + 1) - big = 0, while any order that adds the two ones first gives 2.
        double big = dtype == DType.Float32 ? 16777216 : 9007199254740992;
        double[] src = [big, 1, 1, -big];
        var dest = Backend.Allocate(dtype, 1);
        Backend.ScatterAdd(dest, 1, 1, 1, UpLong([0, 0, 0, 0]), 4, Up(src, dtype));
        Assert.Equal(0.0, Down(dest)[0]);
        var dest2 = Backend.Allocate(dtype, 1);
        Backend.IndexAdd(dest2, 1, 1, 1, UpLong([0, 0, 0, 0]), 4, Up(src, dtype));
        Assert.Equal(0.0, Down(dest2)[0]);
    }
}
