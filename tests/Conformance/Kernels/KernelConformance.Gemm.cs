namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    /// <summary>m, n, k over odd sizes around vector and block edges, including 1 and k = 0.</summary>
    public static TheoryData<int, int, int> GemmSizes => new()
    {
        { 1, 1, 1 }, { 1, 7, 33 }, { 7, 1, 65 }, { 7, 33, 1 }, { 33, 65, 7 }, { 65, 33, 130 },
        { 130, 65, 33 }, { 10, 40, 40 }, { 4, 5, 0 }, { 0, 5, 3 }, { 4, 0, 3 }, { 130, 130, 130 }, { 3, 300, 2 }, { 200, 3, 301 },
    };

    /// <summary>C_b = alpha·op(A_b)·op(B_b) + beta·C_b by the textbook triple loop in double.</summary>
    private static double[] GemmOracle(bool ta, bool tb, int batch, int m, int n, int k, double alpha,
        double[] a, long sa, double[] b, long sb, double beta, double[] c, long sc)
    {
        var y = (double[])c.Clone();
        for (int bi = 0; bi < batch; bi++)
        {
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double acc = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double av = ta ? a[bi * sa + (long)p * m + i] : a[bi * sa + (long)i * k + p];
                        double bv = tb ? b[bi * sb + (long)j * k + p] : b[bi * sb + (long)p * n + j];
                        acc += av * bv;
                    }
                    long ci = bi * sc + (long)i * n + j;
                    y[ci] = alpha * acc + (beta == 0 ? 0 : beta * y[ci]);
                }
            }
        }
        return y;
    }

    /// <summary>Σ_p |op(A)_ip|·|op(B)_pj| per element of C: the scale of a dot product's rounding error.</summary>
    private static double[] GemmMagnitude(bool ta, bool tb, int batch, int m, int n, int k, double alpha,
        double[] a, long sa, double[] b, long sb, double beta, double[] c, long sc) =>
        GemmOracle(ta, tb, batch, m, n, k, Math.Abs(alpha), a.Select(Math.Abs).ToArray(), sa, b.Select(Math.Abs).ToArray(), sb,
            Math.Abs(beta), c.Select(v => double.IsNaN(v) ? 0 : Math.Abs(v)).ToArray(), sc);

    private void CheckGemm(DType dtype, bool ta, bool tb, int batch, int m, int n, int k, double alpha, double beta, bool strideZeroA, bool strideZeroB, int seed)
    {
        long sa = strideZeroA ? 0 : (long)m * k, sb = strideZeroB ? 0 : (long)k * n, sc = (long)m * n;
        var a = Round(RandomValues(seed, Math.Max(1, (strideZeroA ? 1 : batch) * (long)m * k)), dtype);
        var b = Round(RandomValues(seed + 1, Math.Max(1, (strideZeroB ? 1 : batch) * (long)k * n)), dtype);
        var c = Round(RandomValues(seed + 2, batch * sc), dtype);
        if (beta == 0)
        {
            // beta == 0 must ignore C's old content, NaN included.
            Array.Fill(c, double.NaN);
        }
        var expected = GemmOracle(ta, tb, batch, m, n, k, alpha, a, sa, b, sb, beta, c, sc);
        var scale = GemmMagnitude(ta, tb, batch, m, n, k, alpha, a, sa, b, sb, beta, c, sc);
        var sC = Up(c, dtype);
        Backend.Gemm(ta, tb, batch, m, n, k, alpha, Up(a, dtype), sa, Up(b, dtype), sb, beta, sC, sc);
        // Each product and sum rounds at most once in the storage precision: (k + 2)·eps·Σ|terms| bounds the error.
        double eps = Ulps(dtype, 1);
        var tol = scale.Select(s => (k + 2) * eps * s).ToArray();
        AssertClose(expected, Down(sC), 0, tol, $"gemm {dtype.Name()} ta={ta} tb={tb} b={batch} {m}x{n}x{k} alpha={alpha} beta={beta}");
    }

    [Theory]
    [MemberData(nameof(GemmSizes))]
    public void Gemm_AllTransposes_MatchOracle(int m, int n, int k)
    {
        RequireBackend();
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            foreach (bool ta in new[] { false, true })
            {
                foreach (bool tb in new[] { false, true })
                {
                    CheckGemm(dtype, ta, tb, 1, m, n, k, 1, 0, false, false, m * 31 + n * 7 + k);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Gemm_AlphaBeta_AccumulateIntoC(DType dtype)
    {
        RequireBackend();
        CheckGemm(dtype, false, false, 1, 33, 65, 130, 1.7, 0.5, false, false, 1);
        CheckGemm(dtype, true, false, 1, 65, 7, 33, -0.25, 1, false, false, 2);
        CheckGemm(dtype, false, true, 1, 7, 130, 65, 2, -1, false, false, 3);
        CheckGemm(dtype, true, true, 1, 130, 33, 300, 1, 0.125, false, false, 4);
        CheckGemm(dtype, false, false, 1, 4, 5, 0, 2, 0.5, false, false, 5);
        CheckGemm(dtype, false, false, 1, 4, 5, 0, 2, 0, false, false, 6);
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Gemm_Batched_WithStrideZeroOperands(DType dtype)
    {
        RequireBackend();
        CheckGemm(dtype, false, false, 3, 7, 33, 65, 1, 0, false, false, 11);
        CheckGemm(dtype, true, true, 4, 33, 7, 13, 1.5, 0.5, false, false, 12);
        CheckGemm(dtype, false, true, 5, 10, 40, 40, 1, 0, true, false, 13);
        CheckGemm(dtype, true, false, 5, 65, 33, 7, 1, 1, false, true, 14);
        CheckGemm(dtype, false, false, 64, 16, 16, 16, 1, 0, false, false, 15);
        CheckGemm(dtype, false, false, 2, 1, 1, 1, 3, 0, true, true, 16);
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Gemm_LargeBlocked_MatchesOracle(DType dtype)
    {
        RequireBackend();
        // Larger than one cache block in every dimension, so packing edges and thread splits are exercised.
        CheckGemm(dtype, false, false, 1, 257, 300, 520, 1, 0, false, false, 21);
        CheckGemm(dtype, true, true, 1, 190, 4200, 9, 1, 0.5, false, false, 22);
    }
}
