using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>The Reference backend's blocked transpose (<see cref="Copying.Transpose{T}"/>), which the convolutions' packs and stores use.</summary>
public sealed partial class ReferenceKernelConformance
{
    [Fact]
    public unsafe void Transpose_EveryShapeUpToTwoBlocksAndATail_MovesEachElementOnce_AndTouchesNothingElse()
    {
        // Full 8×8 blocks, the masked float edges (rows, columns, both) and the scalar double edges, with row strides
        // wider than the matrix: the destination's other elements must keep their sentinel.
        for (int rows = 1; rows <= 19; rows++)
        {
            for (int cols = 1; cols <= 19; cols++)
            {
                int ld = cols + 3, ldd = rows + 5;
                float[] src = Enumerable.Range(0, rows * ld).Select(i => (float)(i + 1)).ToArray();
                float[] dst = Enumerable.Repeat(-1f, cols * ldd).ToArray();
                double[] src64 = Array.ConvertAll(src, v => (double)v);
                double[] dst64 = Enumerable.Repeat(-1.0, cols * ldd).ToArray();
                fixed (float* ps = src, pd = dst)
                fixed (double* ps64 = src64, pd64 = dst64)
                {
                    Copying.Transpose(ps, ld, pd, ldd, rows, cols);
                    Copying.Transpose(ps64, ld, pd64, ldd, rows, cols);
                }
                for (int j = 0; j < cols; j++)
                {
                    for (int i = 0; i < ldd; i++)
                    {
                        float want = i < rows ? src[i * ld + j] : -1f;
                        Assert.True(dst[j * ldd + i] == want, $"float {rows}×{cols}: dst[{j}, {i}] = {dst[j * ldd + i]}, want {want}");
                        Assert.True(dst64[j * ldd + i] == want, $"double {rows}×{cols}: dst[{j}, {i}] = {dst64[j * ldd + i]}, want {want}");
                    }
                }
            }
        }
    }
}
